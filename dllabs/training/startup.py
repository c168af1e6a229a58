"""What a stage that runs Keras does first, before anything imports Keras.

Keras reads its backend once, when it is first imported, and JAX must join a multi-process run
before it probes its devices (a JAX that has probed them stays single-process, jax-ml/jax#12258).
So each Keras stage module starts with::

    if __name__ == "__main__":  # run as a stage (python -m stages.<name>), not imported
        start_keras_stage("<name>")

ahead of its other imports. Stages that need only NumPy call nothing, and list neither this
module nor the backend and cluster modules among their ``dvc.yaml`` deps, so an edit here does not
rerun them. Tests that import a stage module choose their backend themselves.
"""

from __future__ import annotations

import sys

from dllabs.errors import ParamsError
from dllabs.training.backend import quiet_tensorflow_start, select_backend
from dllabs.training.cluster import join


def start_keras_stage(stage: str, multi_process: bool = False, import_keras: bool = True) -> None:
    """Keep TensorFlow's start-up notices off stderr, set Keras's backend from ``params.yaml``'s
    ``base.backend``, and join the other processes when a launcher started several, which only a
    stage that trains on several processes (``multi_process``, as its lab's registry record says)
    accepts; a bad setting ends the process with one line, before Keras loads.

    The stage declares it here rather than the cluster code reading the lab registry, so that an
    edit of the registry (a label, a figure) reruns no training stage. Keras itself is imported
    here (:func:`import_keras_without_extras`) unless ``import_keras`` is false: for a stage that
    imports Keras only for a non-default setting."""
    quiet_tensorflow_start()
    try:
        backend = select_backend()
        join(backend, stage=stage, multi_process=multi_process)
    except ParamsError as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    if backend == "tensorflow":
        # TensorFlow's import builds its TFLite converter, which imports JAX when it is installed
        # (0.7 s of a process's start on this project's 2-core session machine, Dec 2026) for a
        # JAX conversion nothing here runs; JAX serves only the jax backend. A None entry makes
        # `import jax` fail, which TFLite expects and skips.
        sys.modules.setdefault("jax", None)
    if import_keras:
        import_keras_without_extras()


# Packages Keras imports when they are installed, for features no stage uses through Keras: its
# scikit-learn wrappers (keras.wrappers) and its image-gallery plot (keras.visualization). They
# cost 0.9 s of each Keras stage's start (measured with `python -X importtime` on the 2-core
# session machine, Dec 2026).
KERAS_EXTRAS = ("sklearn", "matplotlib")


def import_keras_without_extras() -> None:
    """Import Keras with :data:`KERAS_EXTRAS` hidden, so that Keras skips those features as it
    does where they are not installed; then unhide them, so that a stage that scores with
    scikit-learn or draws with matplotlib imports them as usual. Does nothing to a package
    already imported."""
    hidden = [name for name in KERAS_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import keras  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
