"""Shared library of the deep-learning labs pipeline.

Modules are named by what they hold:

- ``errors``: the one exception type stages report as a one-line error.
- ``params``: the typed schema of ``params.yaml`` and its loader.
- ``outputs``: atomic, all-or-nothing writing of stage outputs; deterministic ``.npz``/JSON.
- ``fetch``: pinned, verified, mirror-aware downloads into a user cache.
- ``sources``: the dataset registry (bundled, remote, bring-your-own) used by ``download``.
- ``readers``: parsers for raw files (IDX, CIFAR batches, image folders, CSV, tarballs).
- ``splits``: deterministic stratified splits and train-only scaling.
- ``text``: the CBOW lab's text cleaning and tokenization.
- ``datasets``: the processed arrays training and evaluation read (train/val vs test).
- ``models``: Keras 3 model builders (MLP, CNN, LeNet-5, autoencoder) and architecture tables.
- ``training``: the one fit helper (seeding, device, mixed precision, DVCLive, early stopping).
- ``inputs``: the record of a model's inputs written beside it, and new data converted to match.
- ``predict``: ``dl-labs predict``, every lab's model on new data, from any revision.
- ``anomaly``: reconstruction errors, threshold rules and detection scores (no TensorFlow).
- ``reports``: classification metrics and the PNG figures ``evaluate`` writes.
- ``cli``: the path-only command lines of the stages.
"""

__version__ = "0.1.0"
