"""The training stage's side of a trial: report the validation loss to the study after every epoch,
stop when its pruner says so.

``dl-labs tune`` starts each trial's ``dvc exp run`` with :data:`TRIAL_ENV` naming the study's
storage, the study and the trial; DVC passes the environment on to the stages. Where it is set,
:func:`trial_callbacks` gives :func:`dllabs.training.fit.fit` a callback that reports the negated
validation loss (the study maximises) at each epoch, so the pruner compares trials epoch by epoch,
and raises :class:`TrialPruned` when the pruner says to stop: the stage fails in one line, DVC keeps
no experiment, and ``dl-labs tune`` records the trial as pruned (it finds the
``pruned_at_epoch`` attribute set here). The same callback stops the trial when the ``dl-labs
tune`` process that started it is gone (killed): nobody would record its result.

Reporting changes nothing in training: a trial that is not pruned trains exactly as ``dvc repro``
would with its params.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from dllabs.errors import LabError, one_line

TRIAL_ENV = "DL_LABS_TUNE_TRIAL"


class TrialPruned(LabError):
    """The study's pruner stopped this trial (reported as the stage's one line)."""


class TrialOrphaned(LabError):
    """The ``dl-labs tune`` process that started this trial is gone."""


@dataclass(frozen=True)
class TrialLink:
    """Where a stage running as a trial reports: the study's storage URL and name, the trial's id,
    the process id of ``dl-labs tune``, and the study's pruner (Optuna keeps a pruner in the
    process that asks it, not in the storage: the stage builds the same one)."""

    storage: str
    study: str
    trial_id: int
    tune_pid: int
    pruner: str = "median"
    startup_trials: int = 3
    warmup_epochs: int = 3
    max_epochs: int = 1

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> TrialLink | None:
        """The link in this process's environment, or None outside a trial."""
        text = os.environ.get(TRIAL_ENV)
        if not text:
            return None
        try:
            fields = json.loads(text)
            return cls(
                str(fields["storage"]),
                str(fields["study"]),
                int(fields["trial_id"]),
                int(fields["tune_pid"]),
                str(fields["pruner"]),
                int(fields["startup_trials"]),
                int(fields["warmup_epochs"]),
                int(fields["max_epochs"]),
            )
        except (ValueError, KeyError, TypeError):
            raise LabError(
                f"{TRIAL_ENV}: not a trial link (set by dl-labs tune; unset it to run the stage "
                "on its own)"
            ) from None


def trial_callbacks() -> list[Any]:
    """A Keras callback reporting to the trial, in a process that runs as a trial of a study;
    ``[]`` otherwise."""
    link = TrialLink.from_env()
    return [] if link is None else [_reporter(link)]


def _reporter(link: TrialLink) -> Any:
    """Reports ``-val_loss`` at each epoch's end and raises :class:`TrialPruned` on the pruner's
    word. Steps count every epoch this process reports, in order: a stage that fits once (the
    MLP, the CNN, the autoencoder) reports epoch ``e`` as step ``e``. Keras is imported here, not
    by ``dl-labs tune``, which reads :class:`TrialLink` alone."""
    import keras
    import optuna

    from dllabs.tuning.storage import make_pruner, open_storage

    pruner = make_pruner(link.pruner, link.max_epochs, link.startup_trials, link.warmup_epochs)
    try:
        study = optuna.load_study(
            study_name=link.study, storage=open_storage(link.storage), pruner=pruner
        )
        trial = optuna.trial.Trial(study, link.trial_id)
    except (KeyError, ValueError) as exc:  # no such study or trial in the storage
        raise LabError(
            f"{TRIAL_ENV}: trial {link.trial_id} of study {link.study!r} not found in its "
            f"storage ({one_line(exc)})"
        ) from None

    class TrialReporter(keras.callbacks.Callback):
        step = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if not _alive(link.tune_pid):
                raise TrialOrphaned(
                    f"the dl-labs tune process ({link.tune_pid}) that started this trial is "
                    "gone; stopped (its next run records the trial as failed and runs it again)"
                )
            loss = (logs or {}).get("val_loss")
            if loss is None:
                return
            trial.report(-float(loss), self.step)
            self.step += 1
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                raise TrialPruned(
                    f"pruned by the study after epoch {epoch + 1} (validation loss "
                    f"{float(loss):.4g}, behind the other trials at this epoch)"
                )

    return TrialReporter()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
