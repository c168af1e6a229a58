"""Where a study is stored and how its trials are pruned: what ``dl-labs tune`` and a trial's
training stage (reporting its epochs from DVC's temporary copy) both open. Kept apart from the
samplers in :mod:`dllabs.tuning.study` because the training stages depend on this file: a change
here reruns them under ``dvc repro``, a change to how trials are drawn does not.

- **Storage**: SQLite in the repository by default (``.tune/studies.db``, git-ignored: no server
  to start), or any URL Optuna's ``RDBStorage`` takes, such as ``postgresql+psycopg://user:
  password@host/db``, which several machines share (each runs ``dl-labs tune`` in its own clone).
  Trials send a heartbeat; one whose worker died (``kill -9``, a lost machine) is marked failed
  once its heartbeat is :data:`GRACE_SECONDS` old, and Optuna's
  ``RetryHeartbeatStaleTrialCallback`` queues its params again (once), so a study never waits on
  a trial that nobody runs.
- **Pruner**: the median rule (a trial stops when its validation loss at an epoch is worse than
  the median of earlier trials' at that epoch, after :data:`STARTUP_TRIALS` trials and
  :data:`WARMUP_EPOCHS` epochs), Hyperband, or none.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

from dllabs.errors import ParamsError, one_line

DEFAULT_STORAGE = "sqlite:///.tune/studies.db"
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
            raise ParamsError(
                f"--storage {shown}: cannot open the study storage: {first_reason(exc)}"
            ) from None


def _lost_a_schema_race(exc: BaseException) -> bool:
    """Whether creating Optuna's tables failed on a name another process took meanwhile: workers
    started at once against an empty database each create the tables (and stamp their version),
    and PostgreSQL refuses all but the first with a duplicate key or an existing relation. The
    next try finds the tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(exc, IntegrityError | ProgrammingError)


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


def shown_url(url: str) -> str:
    """A storage URL as printed: its password starred."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def first_reason(exc: BaseException) -> str:
    """The first line of a driver's message, without SQLAlchemy's background links."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return shown_url(one_line(text, 240))
