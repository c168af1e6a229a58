"""The study: how it samples, and how it is opened. Optuna is the engine; this module only
chooses its parts and names the errors. Where a study is stored and how its trials are pruned is
:mod:`dllabs.tuning.storage`, which a trial's training stage reads too.

- **Sampler**: TPE seeded from ``base.seed`` (``random`` and ``grid`` selectable). The seed of
  trial ``n``'s draws is derived from ``base.seed`` and ``n`` (:class:`TrialSeeded`): trial numbers
  come from the storage, unique in the study, so a second run or a second machine does not repeat
  the first one's draws, and trial ``n``'s random draw is the same whoever runs it.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from dllabs.errors import ParamsError
from dllabs.tuning.storage import first_reason

SAMPLERS = ("tpe", "random", "grid")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_study_name(name: str) -> str:
    """A study name that is also a valid part of an experiment's name (a git ref)."""
    if not STUDY_NAME.match(name) or ".." in name or name.endswith((".", ".lock")):
        raise ParamsError(
            f"--study {name!r}: expected letters, digits, '_', '-' or '.', starting with a letter "
            "or digit, at most 64 characters (it names the trials' experiments)"
        )
    return name


def make_sampler(name: str, seed: int, grid: dict[str, list[Any]] | None = None) -> Any:
    import optuna

    if name == "tpe":
        return TrialSeeded(lambda trial_seed: optuna.samplers.TPESampler(seed=trial_seed), seed)
    if name == "random":
        return TrialSeeded(lambda trial_seed: optuna.samplers.RandomSampler(seed=trial_seed), seed)
    if name == "grid":
        # Seeded once: the seed shuffles the grid, whose point ``n`` trial ``n`` takes (workers
        # take distinct points without it).
        return optuna.samplers.GridSampler(grid or {}, seed=seed)
    raise ParamsError(f"--sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s draws in a study seeded with ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence((seed, number)).generate_state(1)[0])


class TrialSeeded:
    """An Optuna sampler whose draws for trial ``n`` come from a sampler of its own, seeded with
    :func:`trial_seed` (``seed``, ``n``).

    One sampler seeded once would draw the same sequence in every process: a second run of the
    study would start again from the first run's startup draws, and two machines starting at
    once would run the same params under two trial numbers. Per trial, every draw is new, and a
    study is as reproducible as before: trial ``n``'s random draw depends on the seed and ``n``
    alone, TPE's on them and on the trials finished before it."""

    def __init__(self, make: Any, seed: int) -> None:
        self._make, self._seed = make, seed
        self._samplers: dict[int, Any] = {}
        self._lock = threading.Lock()  # --workers: trials begin and end on several threads

    def _of(self, trial: Any) -> Any:
        with self._lock:
            if trial.number not in self._samplers:
                self._samplers[trial.number] = self._make(trial_seed(self._seed, trial.number))
            return self._samplers[trial.number]

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self._of(trial).sample_independent(study, trial, name, distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        sampler = self._of(trial)
        with self._lock:
            self._samplers.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Optuna reseeds a study's sampler from the system's entropy in each thread of
        ``n_jobs``, so that threads do not share draws; per-trial seeds share none already."""


def open_study(name: str, storage: Any, sampler: Any, pruner: Any, shown: str) -> Any:
    """The study ``name`` in ``storage``, created (maximising) if it is new."""
    import optuna

    try:
        return optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as exc:
        raise ParamsError(
            f"--storage {shown}: cannot open study {name!r}: {first_reason(exc)}"
        ) from None
