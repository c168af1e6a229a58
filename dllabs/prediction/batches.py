"""The one way a trained model runs on many rows: evaluation stages, the training stages that score
their own model, and ``dl-labs predict`` all call :class:`Predictor` (or :func:`predict`).

Rows go through ``predict_on_batch`` a batch at a time: no input pipeline is built per call, as
``model.predict`` builds one, and an on-disk array (:class:`~dllabs.data.arrays.NpyRows`) is read
one batch at a time. Every row is predicted: under JAX's data parallelism, which splits each batch
evenly over the devices, batches are padded to a multiple of the devices and the padding's
outputs dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Rows a step, as model.predict's default. A prediction's last bits depend on the batch it was
# computed in (the kernels block a batch differently by its size), so the stages keep the one
# their committed numbers came from; dl-labs predict takes larger ones for throughput.
BATCH = 32


class Predictor:
    """A model's outputs, ``batch_size`` rows at a time, as the model's own dtype.

    Each new batch shape costs a graph trace. Once a full batch has been predicted, a shorter
    last batch is padded to the full size, so that 1,000 images trace one shape, not two (this
    holds across calls: ``dl-labs predict`` calls it once per chunk of decoded images).
    ``replicas`` is the number of devices JAX splits each batch over (1 elsewhere).
    """

    def __init__(self, model: Any, batch_size: int = BATCH, replicas: int = 1) -> None:
        self.model = model
        self.replicas = max(1, int(replicas))
        self.batch_size = -(-int(batch_size) // self.replicas) * self.replicas
        self._traced_full = False

    def __call__(self, x: Any) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), self.batch_size):
            batch = np.asarray(x[start : start + self.batch_size])
            rows = len(batch)
            if rows == self.batch_size:
                self._traced_full = True
            target = self.batch_size if self._traced_full else rows + (-rows % self.replicas)
            if target > rows:
                padding = np.zeros((target - rows, *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, padding])
            outputs.append(self._batch(batch)[:rows])
        return np.concatenate(outputs)

    def _batch(self, batch: np.ndarray) -> np.ndarray:
        if self.replicas == 1:
            return np.asarray(self.model.predict_on_batch(batch))
        # predict_on_batch skips the step that spreads a batch over the devices; predict does it.
        return np.asarray(self.model.predict(batch, batch_size=len(batch), verbose=0))


def predict(model: Any, x: Any, batch_size: int = BATCH, replicas: int = 1) -> np.ndarray:
    """Every row of ``x`` through ``model`` (see :class:`Predictor`)."""
    return Predictor(model, batch_size, replicas)(x)
