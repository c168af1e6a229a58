"""Interrupted training resumes: a checkpoint beside a stage's outputs, kept at every epoch's end.

A training stage killed after epoch k (``kill -9``, out of memory, Ctrl-C, a lost machine) and run
again continues with epoch k + 1, and ends with the weights an uninterrupted run gives on the same
machine. :func:`dllabs.training.fit` does it when given a :class:`Checkpoint`; stages get one from
:func:`resumable`, which also decides when it goes away.

**What a checkpoint holds**, in one ``state.npz`` written to a temporary and renamed over the last
one, so a kill at any moment leaves the previous epoch's checkpoint whole:

- every model variable, the seed-generator states of Dropout and the random-augmentation layers
  included. ``keras.callbacks.BackupAndRestore`` saves ``model.save_weights``, which leaves those
  states out: a run resumed with it drew other dropout masks and ended with other weights
  (measured), and it keeps neither the callbacks' state nor the curves;
- the optimizer's variables: iteration count, momenta, and the learning rate ReduceLROnPlateau
  left;
- the stateful callbacks' counters (:data:`CALLBACK_STATE`: EarlyStopping's wait, best value and
  best weights, ReduceLROnPlateau's wait, best value and cooldown, the epoch timer's seconds), so
  early stopping fires at the epoch it would have, and restores the same best weights;
- every finished epoch's logs, replayed into the new DVCLive run so its curves hold each epoch once.
  (DVCLive's own ``resume=True`` reads an existing DVCLive folder, but a stage writes its folder
  afresh in a temporary, ``dllabs.outputs``, and DVC deletes the old one before the run.)

Its cost grows with the state saved each epoch: 1-2 MB for the default MLP and CNN, 410 MB for a
ResNet50 base trained with Adam.

The data order needs nothing saved: :class:`~dllabs.data.datasets.ImageBatches` draws each
epoch's order from ``(base.seed, epoch)``, and ``fit`` starts a resumed run's batches at its first
epoch (``from_epoch``), so every epoch, resumed or not, sees the training rows in the same order.

**Where**: ``<outputs' folder>/.resume/<output name>/`` (``models/.resume/mlp/``), git-ignored and
not declared in ``dvc.yaml``. DVC deletes a stage's outputs before running it, so the checkpoint
cannot be one or lie inside one. A ``persist: true`` output would survive, but DVC would then
insist that it exist after every run, cache it and record its hash in ``dvc.lock``, whereas the
checkpoint exists only between a kill and the next successful run.

**Only the same run resumes**: the checkpoint stores a :func:`fingerprint` of the training params,
the architecture and initial variables (which the seed, a pretrained base or an earlier phase
decide), the training and validation arrays themselves, the loss, metrics, first epoch, device
and Keras version. A checkpoint with another fingerprint (``-S mlp.learning_rate=...`` after a
kill) is discarded with one line, as is an unreadable one.

**Lifetime**: :func:`resumable` removes the checkpoint when the stage succeeds, and when it fails
with a :class:`~dllabs.errors.LabError` (diverged training, bad params or data: resuming would
repeat the failure); a kill, Ctrl-C or any other error (disk full, out of memory) keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dllabs.errors import LabError

RESUME_FOLDER = ".resume"  # git-ignored wherever it appears

# What each stateful Keras callback counts between epochs (Keras 3's attribute names); other
# callbacks list theirs in a ``resume_state`` attribute.
CALLBACK_STATE: dict[type, tuple[str, ...]] = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


def state_names(callback: keras.callbacks.Callback) -> tuple[str, ...]:
    """The attributes of ``callback`` that a resumed run must get back."""
    for kind, names in CALLBACK_STATE.items():
        if isinstance(callback, kind):
            return names
    return tuple(getattr(callback, "resume_state", ()))


@dataclass
class TrainingState:
    """Everything a run needs to continue after epoch ``epoch`` (numbered from 1 as ``fit`` numbers
    them, so a later phase's epochs go on from its ``initial_epoch``)."""

    fingerprint: str
    epoch: int
    stopped: bool  # early stopping fired: nothing is left to train
    logs: list[dict[str, float]]  # one per epoch this run trained, from its first epoch on
    model: list[np.ndarray]
    optimizer: list[np.ndarray]
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = _numbered("model", self.model) | _numbered("optimizer", self.optimizer)
        described: dict[str, dict[str, Any]] = {}
        for key, values in self.callbacks.items():
            described[key] = {}
            for name, value in values.items():
                if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
                    arrays |= _numbered(f"callback/{key}/{name}", value)
                    described[key][name] = {"arrays": len(value)}
                else:
                    described[key][name] = {"value": value}
        meta = {
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "stopped": self.stopped,
            "logs": self.logs,
            "callbacks": described,
        }
        arrays["meta"] = np.array(json.dumps(meta))  # logs keep their order, as DVCLive saw it
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrainingState:
        meta = json.loads(arrays["meta"].item())
        callbacks: dict[str, dict[str, Any]] = {}
        for key, values in meta["callbacks"].items():
            callbacks[key] = {
                name: _unnumbered(arrays, f"callback/{key}/{name}", kept["arrays"])
                if "arrays" in kept
                else kept["value"]
                for name, kept in values.items()
            }
        return cls(
            fingerprint=meta["fingerprint"],
            epoch=int(meta["epoch"]),
            stopped=bool(meta["stopped"]),
            logs=meta["logs"],
            model=_unnumbered(arrays, "model"),
            optimizer=_unnumbered(arrays, "optimizer"),
            callbacks=callbacks,
        )


def _numbered(prefix: str, values: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{i:05d}": np.asarray(value) for i, value in enumerate(values)}


def _unnumbered(arrays: dict[str, np.ndarray], prefix: str, count: int | None = None) -> list:
    names = sorted(name for name in arrays if name.rsplit("/", 1)[0] == prefix)
    if count is not None and len(names) != count:
        raise ValueError(f"{prefix}: {len(names)} arrays, expected {count}")
    return [arrays[name] for name in names]


class Discarded(Exception):
    """A checkpoint this run cannot use; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    """Where one training run keeps its state between epochs, and the stage to name in messages."""

    folder: Path
    stage: str

    @classmethod
    def beside(cls, output: str | Path, stage: str) -> Checkpoint:
        """The checkpoint of the run that writes ``output``: ``models/mlp.keras`` (or the folder
        ``models/transfer``) keeps it in ``models/.resume/mlp`` (``models/.resume/transfer``)."""
        output = Path(output)
        return cls(output.parent / RESUME_FOLDER / output.stem, stage)

    def part(self, *names: str) -> Checkpoint:
        """The checkpoint of one of several runs in a stage (a phase, a repeat)."""
        return Checkpoint(self.folder.joinpath(*names), self.stage)

    @property
    def file(self) -> Path:
        return self.folder / "state.npz"

    def save(self, state: TrainingState) -> None:
        """Write ``state`` whole, or leave the previous one (temporary file, flushed, renamed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / ".state.tmp.npz"
        with temporary.open("wb") as stream:
            np.savez(stream, allow_pickle=False, **state.to_arrays())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.file)

    def load(self, fingerprint: str) -> TrainingState | None:
        """The saved state of this very run; None, after one line saying why, for any other."""
        if not self.file.is_file():
            return None
        try:
            with np.load(self.file, allow_pickle=False) as saved:
                state = TrainingState.from_arrays({name: saved[name] for name in saved.files})
            if state.fingerprint != fingerprint:
                raise Discarded("its params, data, seed or model differ from this run's")
        except (Discarded, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as why:
            self.say(f"discarding the checkpoint of an interrupted run ({self.folder}): {why}")
            self.remove_own()
            return None
        return state

    def say(self, message: str) -> None:
        print(f"{self.stage}: {message}", flush=True)

    def remove_own(self) -> None:
        """Remove this checkpoint's folder (its parts included)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove(self) -> None:
        """Remove this checkpoint, then the folders up to ``.resume`` that it leaves empty."""
        self.remove_own()
        if RESUME_FOLDER not in self.folder.parent.parts:
            return
        for parent in self.folder.parents:
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty
            if parent.name == RESUME_FOLDER:
                break


@contextmanager
def resumable(output: str | Path, stage: str) -> Iterator[Checkpoint]:
    """The checkpoint for the training that writes ``output``, removed when the block succeeds or
    fails with a :class:`LabError`; kept when it is killed or interrupted (see module docstring).

    Enter it before the stage's ``staged_outputs()``, so the outputs are in place before the
    checkpoint goes.
    """
    checkpoint = Checkpoint.beside(output, stage)
    try:
        yield checkpoint
    except LabError:
        checkpoint.remove()
        raise
    checkpoint.remove()


HASH_ROWS = 1024


def fingerprint(model: keras.Model, arrays: Iterable[Any], settings: dict[str, Any]) -> str:
    """A hash of what decides a training run's result (see module docstring).

    Call it before training: the model's variables then hold their initial values. The arrays are
    hashed whole, which catches any change of data, where a file's size and
    modification time would miss a transfer draw of other images from the same file. Arrays on
    disk (``dllabs.data.arrays.NpyRows``) are read a block of rows at a time, never whole.
    """
    digest = hashlib.sha256()
    described = {
        **settings,
        "architecture": json.loads(model.to_json()),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    text = json.dumps(described, sort_keys=True, default=keras.saving.serialize_keras_object)
    digest.update(text.encode())
    for array in (*(keras.ops.convert_to_numpy(v) for v in model.variables), *arrays):
        digest.update(f"{np.dtype(array.dtype).str}{tuple(array.shape)}".encode())
        if np.ndim(array) == 0:
            digest.update(np.ascontiguousarray(array))
            continue
        for start in range(0, len(array), HASH_ROWS):  # rows on disk are read a block at a time
            digest.update(np.ascontiguousarray(array[start : start + HASH_ROWS]))
    return digest.hexdigest()


class KeepCheckpoint(keras.callbacks.Callback):
    """Save the run's :class:`TrainingState` at every epoch's end; on a rerun of the same run,
    put it back (variables in :meth:`restore`, before ``fit``; callbacks when training begins).

    Goes last in the callback list: it saves what the others left at the end of the epoch, and
    restores their counters after their own ``on_train_begin`` has reset them.
    """

    def __init__(
        self, checkpoint: Checkpoint, fingerprint: str, callbacks: list[keras.callbacks.Callback]
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.fingerprint = fingerprint
        self.stateful: dict[str, tuple[keras.callbacks.Callback, tuple[str, ...]]] = {}
        for callback in callbacks:
            if names := state_names(callback):
                kind = type(callback).__name__
                count = sum(key.split("#")[0] == kind for key in self.stateful)
                self.stateful[f"{kind}#{count}"] = (callback, names)
        self.restored: TrainingState | None = None
        self.logs: list[dict[str, float]] = []  # of every epoch, those before a resume included

    def restore(self, model: keras.Model, first_epoch: int, end_epoch: int) -> int:
        """Load a checkpoint of this run, if there is one, and put back the model's and optimizer's
        variables; return the epoch to train from (``end_epoch``: none left)."""
        state = self.checkpoint.load(self.fingerprint)
        if state is None:
            return first_epoch
        model.optimizer.build(model.trainable_variables)
        pairs = [(model.variables, state.model), (model.optimizer.variables, state.optimizer)]
        kept = {key: set(values) for key, values in state.callbacks.items()}
        if not all(_fits(variables, values) for variables, values in pairs) or kept != {
            key: set(names) for key, (_, names) in self.stateful.items()
        }:  # the same params and data, but other code
            self.checkpoint.say(
                f"discarding the checkpoint of an interrupted run ({self.checkpoint.folder}): "
                "its variables or callbacks do not fit this run"
            )
            self.checkpoint.remove_own()
            return first_epoch
        self.restored, self.logs = state, list(state.logs)
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        if state.stopped or state.epoch >= end_epoch:
            self.checkpoint.say(
                f"taking the training finished by an interrupted run from its checkpoint "
                f"({state.epoch - first_epoch} epochs; {self.checkpoint.folder})"
            )
            return end_epoch
        self.checkpoint.say(
            f"resuming an interrupted run from its checkpoint after epoch {state.epoch} "
            f"({self.checkpoint.folder})"
        )
        return state.epoch

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.restored is None:
            return
        for key, (callback, names) in self.stateful.items():
            for name in names:
                value = self.restored.callbacks[key][name]
                setattr(callback, name, list(value) if isinstance(value, list) else value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.logs.append({name: float(value) for name, value in (logs or {}).items()})
        self.checkpoint.save(
            TrainingState(
                fingerprint=self.fingerprint,
                epoch=epoch + 1,
                stopped=bool(self.model.stop_training),
                logs=self.logs,
                model=[keras.ops.convert_to_numpy(v) for v in self.model.variables],
                optimizer=[keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables],
                callbacks={
                    key: {name: _plain(getattr(callback, name)) for name in names}
                    for key, (callback, names) in self.stateful.items()
                },
            )
        )


def _fits(variables: list[Any], values: list[np.ndarray]) -> bool:
    return len(variables) == len(values) and all(
        tuple(v.shape) == value.shape for v, value in zip(variables, values, strict=True)
    )


def _plain(value: Any) -> Any:
    """A callback attribute as JSON or a list of arrays (EarlyStopping's best weights)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, np.ndarray) else _plain(v) for v in value]
    return value
