"""The deep-learning labs' library, grouped by role; each stage in ``stages/`` reads like its lab
and calls into it.

- ``data``: where each lab's data comes from and the arrays the stages read (sources, fetch,
  readers, splits, arrays, datasets, text).
- ``models``: the networks and how they are stored (builders, applications, EfficientNet-Lite0,
  CBOW in Keras, word-vector files, input records, safe loading).
- ``labs``: the lab registry, and what a lab needs beyond a model and a fit (anomaly thresholds,
  word2vec, transfer).
- ``training``: backend, devices, several processes, the one fit helper, callbacks, resuming,
  a Keras stage's start-up.
- ``evaluation``: scores with intervals, reports and figures.
- ``prediction``: the one batched prediction path, and ``dl-labs predict``.
- ``tooling``: the repository's own checks and generators, never run by a stage.
- top level: what everything shares: ``errors``, ``params``, ``stage_args`` (the stages' argument
  parser), ``outputs`` (all-or-nothing writes) and ``provenance`` (where a result was computed).
"""
