"""Data in: where each lab's data comes from, and the arrays the stages train and test on.

``sources`` (the dataset registry) -> ``fetch`` (pinned downloads) -> ``readers`` (raw files) ->
``splits`` (stratified splits, train-only scaling) -> ``arrays`` (``.npy`` on disk) ->
``datasets`` (what training reads); ``text`` prepares the CBOW lab's corpus. Also holds the word
lists the project ships (``stopwords_en.txt``, ``imagenet_classes.txt``).
"""
