"""The repository's own tooling, run by ``make`` and the tests, never by a stage: composing
``params.yaml`` from presets (``presets``), the reproducibility check (``reproducibility``), the
docs' result tables (``result_tables``) and figures (``doc_figures``), ``dvc.yaml``'s code deps
(``code_deps``), and tabulating a queued sweep (``sweep``).
"""
