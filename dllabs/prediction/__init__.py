"""Predictions: the one batched path every stage and ``dl-labs predict`` share (``batches``),
where ``dl-labs predict`` reads models from, the workspace or a revision (``revisions``), and the
command itself (``command``).
"""
