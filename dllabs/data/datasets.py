"""The processed arrays that training and evaluation stages read, and the batches they train on.

Training stages ask for ``train`` and ``val`` only; the ``test`` split is read by the
``evaluate_*`` stages alone, so no training decision can see it.

``preprocess`` writes one ``.npy`` per array in a folder. A split's images are loaded into memory
when they fit the budget (``DL_LABS_MEMORY_MB``, :data:`DEFAULT_MEMORY_MB` by default), else read
from disk a batch at a time (:class:`~dllabs.data.arrays.NpyRows`). Either way the image stages
train on :class:`ImageBatches`, whose order depends on the seed and the epoch only, so where the
rows come from changes no batch, no weight and no metric: the budget is a property of the machine,
not a param, as the download mirror is.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dllabs.data.arrays import NpyRows, load_npy
from dllabs.errors import DataError, LabError

MEMORY_ENV = "DL_LABS_MEMORY_MB"
DEFAULT_MEMORY_MB = 64.0  # TensorFlow alone takes ~700 MB RSS: a 1 GB stage leaves little

Images = np.ndarray | NpyRows


def memory_budget() -> float:
    """Bytes of images the stages may hold in memory: ``DL_LABS_MEMORY_MB`` (MB), or the default."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        return DEFAULT_MEMORY_MB * 2**20
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise LabError(f"{MEMORY_ENV}={text!r}: expected megabytes, a number >= 0")
    return value * 2**20


@dataclass(frozen=True)
class ImageSplits:
    """uint8 NHWC images per split (in memory or on disk), integer labels, and the class names."""

    splits: dict[str, tuple[Images, np.ndarray]]
    class_names: list[str]

    @classmethod
    def load(
        cls, folder: str | Path, splits: tuple[str, ...], in_memory: bool | None = None
    ) -> ImageSplits:
        """The ``splits`` of the ``.npy`` folder ``preprocess`` wrote.

        ``in_memory``: True loads every split's images, False reads them from disk as indexed,
        None (the default) loads the smallest splits while they fit :func:`memory_budget` and
        leaves the rest on disk. Labels and class names are always loaded (they are small).
        """
        folder = Path(folder)
        if not folder.is_dir():
            what = "a file, not" if folder.exists() else "not found; expected"
            raise DataError(
                f"{folder}: {what} the folder of .npy arrays preprocess writes (dvc repro)"
            )
        class_names = load_npy(folder / "class_names.npy")
        if class_names.ndim != 1 or class_names.dtype.kind != "U":
            raise DataError(f"{folder / 'class_names.npy'}: expected a 1-d array of strings")
        on_disk = {s: NpyRows(folder / f"x_{s}.npy") for s in splits}
        labels = {s: load_npy(folder / f"y_{s}.npy") for s in splits}
        for s in splits:
            x, y = on_disk[s], labels[s]
            if x.ndim != 4 or y.shape != (len(x),):
                raise DataError(
                    f"{folder}: x_{s}.npy {x.shape} and y_{s}.npy {y.shape} are not n images "
                    "(n, height, width, channels) with n labels"
                )
        budget = math.inf if in_memory else 0.0 if in_memory is False else memory_budget()
        images: dict[str, Images] = dict(on_disk)
        for s in sorted(splits, key=lambda s: on_disk[s].nbytes):
            if on_disk[s].nbytes > budget:
                break
            budget -= on_disk[s].nbytes
            images[s] = on_disk[s].load()
        return cls({s: (images[s], labels[s]) for s in splits}, class_names.tolist())

    def __getitem__(self, split: str) -> tuple[Images, np.ndarray]:
        return self.splits[split]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.splits.values()))[0].shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


class ImageBatches(keras.utils.PyDataset):
    """Batches of ``(x, y)`` rows (``x`` alone when ``y`` is None) for ``fit``, ``predict`` and
    ``evaluate``, the same whether ``x`` is in memory or on disk.

    Unshuffled, it is one pass in row order. Shuffled, epoch ``e`` visits the rows in the order
    ``numpy.random.default_rng([seed, e]).permutation(n)``, and the dataset is an endless stream
    of epochs (``num_batches`` None) that :func:`dllabs.training.fit` cuts with
    ``steps_per_epoch``: batch ``i`` of the stream is batch ``i % len(self)`` of epoch
    ``first_epoch + i // len(self)``. The order therefore depends on nothing Keras calls back
    (``on_epoch_end`` can run after the next epoch's first batches were prefetched), nor on
    Keras's own shuffling, which is left off.
    """

    def __init__(
        self,
        x: Images,
        y: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        first_epoch: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if y is not None and len(y) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if batch_size < 1 or len(x) == 0:
            raise ValueError(f"need rows and a batch size >= 1 (got {len(x)} rows, {batch_size})")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.first_epoch = shuffle, int(seed), int(first_epoch)
        self.multiple_of = 1  # rows per batch a multiple of this: see split_over()
        self.part, self.parts = 0, 1  # this process's share of every batch: see share()
        self._order: tuple[int, np.ndarray] | None = None

    def split_over(self, replicas: int) -> ImageBatches:
        """These batches cut to a multiple of ``replicas`` rows, as JAX's data parallelism needs
        (it splits every batch evenly over the devices): the last batch of an epoch loses up to
        ``replicas - 1`` rows, a different few each shuffled epoch."""
        split = copy.copy(self)
        split.multiple_of = int(replicas)
        if len(split) == 0:
            raise ValueError(f"{len(self.x)} rows cannot be split over {replicas} devices")
        return split

    def share(self, part: int, parts: int) -> ImageBatches:
        """Part ``part`` of ``parts`` equal, contiguous slices of every batch: what one process of
        a multi-process run feeds (its devices take the same rows of the global batch as they
        would in one process). Call after :meth:`split_over` with every process's devices, so
        each batch divides evenly."""
        if self.multiple_of % parts:
            raise ValueError(f"batches of a multiple of {self.multiple_of} rows over {parts} parts")
        shared = copy.copy(self)
        shared.part, shared.parts = int(part), int(parts)
        return shared

    def from_epoch(self, epoch: int) -> ImageBatches:
        """These batches with the stream starting at epoch ``epoch``: what ``fit`` trains on when
        it starts there (a resumed run, a later phase), so each epoch keeps its own order."""
        started = copy.copy(self)
        started.first_epoch, started._order = int(epoch), None
        return started

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (rest >= self.multiple_of)

    @property
    def num_batches(self) -> int | None:
        return None if self.shuffle else len(self)

    @property
    def steps_per_epoch(self) -> int | None:
        """What ``model.fit`` needs to cut the endless shuffled stream into epochs."""
        return len(self) if self.shuffle else None

    def order(self, epoch: int) -> np.ndarray:
        """The rows of epoch ``epoch`` in the order they are visited."""
        if not self.shuffle:
            return np.arange(len(self.x))
        cached = self._order
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.x)))
            self._order = cached
        return cached[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        epoch, batch = divmod(int(index), len(self))
        start = batch * self.batch_size
        stop = min(start + self.batch_size, len(self.x))
        stop -= (stop - start) % self.multiple_of
        if self.parts > 1:
            size = (stop - start) // self.parts
            start, stop = start + self.part * size, start + (self.part + 1) * size
        if self.shuffle:
            rows = self.order(self.first_epoch + epoch)[start:stop]
            return (self.x[rows],) if self.y is None else (self.x[rows], self.y[rows])
        return (self.x[start:stop],) if self.y is None else (self.x[start:stop], self.y[start:stop])
