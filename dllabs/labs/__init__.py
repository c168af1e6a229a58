"""The labs: their registry (``registry``: one record per lab, everything keyed by a lab's
name), and what a lab needs beyond a model and a fit: the anomaly lab's errors and thresholds
(``anomaly``), the CBOW lab's gensim training and evaluation (``word2vec``) and its Keras engine
(``keras_cbow``), and the transfer lab's tasks, bases, heads and freezing (``transfer``). Labs 1
and 2 need only ``models.builders`` and ``training``.
"""
