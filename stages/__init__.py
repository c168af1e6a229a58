"""Pipeline stages: one module per ``dvc.yaml`` stage, each with a ``main()``.

``dvc.yaml`` runs ``python -m stages.<name>`` and passes every input and output path on the
command line, so ``dvc.yaml`` alone shows the data flow. Importing the package runs nothing: the
stages that run Keras start by calling :func:`dllabs.training.startup.start_keras_stage`.
"""
