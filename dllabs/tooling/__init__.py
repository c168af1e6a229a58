"""The repository's own tooling, run by ``make`` and the tests, never by a stage: composing
``params.yaml`` from presets (``presets``), the reproducibility check (``reproducibility``),
the docs' result tables (``result_tables``), tabulating a queued sweep (``sweep``) and recording
which params a stage reads (``param_reads``).
"""
