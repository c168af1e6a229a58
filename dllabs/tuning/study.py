"""The study: where it is stored, how it samples and prunes. Optuna is the engine; this module
only chooses its parts and names the errors.

- **Storage**: SQLite in the repository by default (``.tune/studies.db``, git-ignored: no server
  to start), or any URL Optuna's ``RDBStorage`` takes, such as ``postgresql://user:password@host/
  db``, which several machines share (each runs ``dl-labs tune`` in its own clone). Trials send a
  heartbeat; one whose worker died (``kill -9``, a lost machine) is marked failed once its
  heartbeat is :data:`GRACE_SECONDS` old, and Optuna's ``RetryHeartbeatStaleTrialCallback``
  queues its params again (once), so a study never waits on a trial that nobody runs.
- **Sampler**: TPE seeded from ``base.seed`` (``random`` and ``grid`` selectable). The seed of
  trial ``n``'s draws is derived from ``base.seed`` and ``n`` (:class:`TrialSeeded`): trial numbers
  come from the storage, unique in the study, so a second run or a second machine does not repeat
  the first one's draws, and trial ``n``'s random draw is the same whoever runs it.
- **Pruner**: the median rule (a trial stops when its validation loss at an epoch is worse than
  the median of earlier trials' at that epoch, after :data:`STARTUP_TRIALS` trials and
  :data:`WARMUP_EPOCHS` epochs), Hyperband, or none.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from dllabs.errors import ParamsError, one_line

DEFAULT_STORAGE = "sqlite:///.tune/studies.db"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
# A trial's heartbeat every HEARTBEAT_SECONDS; silent for GRACE_SECONDS, it is failed and retried.
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
RETRIES = 1
# Tries at opening a storage whose tables another worker is creating at the same moment.
SCHEMA_ATTEMPTS = 3
# The median pruner waits for this many finished trials, and prunes no trial before this epoch:
# an epoch or two of validation loss says little of where a run ends.
STARTUP_TRIALS = 3
WARMUP_EPOCHS = 3
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_study_name(name: str) -> str:
    """A study name that is also a valid part of an experiment's name (a git ref)."""
    if not STUDY_NAME.match(name) or ".." in name or name.endswith((".", ".lock")):
        raise ParamsError(
            f"--study {name!r}: expected letters, digits, '_', '-' or '.', starting with a letter "
            "or digit, at most 64 characters (it names the trials' experiments)"
        )
    return name


def open_storage(url: str, grace_seconds: int = GRACE_SECONDS) -> Any:
    """Optuna's ``RDBStorage`` at ``url``, with heartbeats and the retry of dead trials; an
    unreachable server, a refused login or an unknown scheme is one line (without the password).
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    shown = shown_url(url)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "mysql"):
        raise ParamsError(
            f"--storage {shown}: unknown scheme {scheme!r}; expected sqlite:///path or "
            "postgresql://user:password@host:port/database"
        )
    if url.startswith("postgresql://"):
        # The driver the postgres extra installs (psycopg 3); SQLAlchemy 2.0 would look for
        # psycopg2 without the name.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine: dict[str, Any] = {}
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path and path != url and not path.startswith(":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Writers wait for each other (the trials' stages report from their own processes).
        engine = {"connect_args": {"timeout": 60}}
    else:
        # An unreachable server fails in seconds, not after the driver's default minutes.
        engine = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():  # Optuna calls its heartbeat experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=max(1, min(HEARTBEAT_SECONDS, grace_seconds // 3)),
                    grace_period=grace_seconds,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(RETRIES),
                )
        except ImportError as exc:
            raise ParamsError(
                f"--storage {shown}: its driver is not installed ({one_line(exc)}); for "
                'PostgreSQL run make install EXTRAS="dev postgres"'
            ) from None
        except Exception as exc:  # SQLAlchemy's OperationalError and the like, from the driver
            if attempt < SCHEMA_ATTEMPTS and _lost_a_schema_race(exc):
                time.sleep(attempt)
                attempt += 1
                continue
            raise ParamsError(f"--storage {shown}: cannot open the study storage: "
                              f"{_first_reason(exc)}") from None  # fmt: skip


def _lost_a_schema_race(exc: BaseException) -> bool:
    """Whether creating Optuna's tables failed on a name another process took meanwhile: workers
    started at once against an empty database each create the tables (and stamp their version),
    and PostgreSQL refuses all but the first with a duplicate key or an existing relation. The
    next try finds the tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(exc, IntegrityError | ProgrammingError)


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


def make_pruner(
    name: str, max_epochs: int, startup: int = STARTUP_TRIALS, warmup: int = WARMUP_EPOCHS
) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ParamsError(f"--pruner {name!r}: expected one of {', '.join(PRUNERS)}")


def open_study(name: str, storage: Any, sampler: Any, pruner: Any, shown: str) -> Any:
    """The study ``name`` in ``storage``, created (maximising) if it is new."""
    import optuna

    try:
        return optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner,
            direction="maximize", load_if_exists=True,
        )  # fmt: skip
    except Exception as exc:
        raise ParamsError(f"--storage {shown}: cannot open study {name!r}: "
                          f"{_first_reason(exc)}") from None  # fmt: skip


def shown_url(url: str) -> str:
    """A storage URL as printed: its password starred."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def _first_reason(exc: BaseException) -> str:
    """The first line of a driver's message, without SQLAlchemy's background links."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return shown_url(one_line(text, 240))
