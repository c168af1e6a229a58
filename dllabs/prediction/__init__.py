"""Predictions: the one batched path every stage and ``dl-labs predict`` share (``batches``), and
the ``dl-labs predict`` command itself (``command``).
"""
