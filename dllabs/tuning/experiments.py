"""Trials as DVC experiments: each one is ``dvc exp run --temp --name <study>-<number> -S ...
<stage>``, run outside the workspace (DVC copies the repository into ``.dvc/tmp/exps``), so
several run at once and the workspace is never touched. Its params and validation metrics are
then in ``dvc exp show``, and ``dvc exp apply`` brings any of them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllabs.errors import DataError
from dllabs.tuning.space import override_value, set_key

LOGS = Path(".tune/logs")
# A training's per-epoch loss table: about 30 bytes an epoch, so a million epochs at most.
MAX_HISTORY_BYTES = 32 * 2**20
CONF = Path("conf")  # where Hydra composes params.yaml from (.dvc/config: hydra enabled)
# Set when the search is stopped (Ctrl-C, SIGTERM): with --workers, the experiments are awaited in
# worker threads, which no signal reaches; they see this and stop theirs.
STOPPING = threading.Event()


@dataclass(frozen=True)
class Run:
    """How an experiment's ``dvc exp run`` ended: its exit status, its one-line reason (the
    stage's ``error:`` line, or DVC's) and its log, and how long it took."""

    returncode: int
    reason: str
    log: Path
    seconds: float


def dvc(*args: str) -> list[str]:
    """A DVC command with this interpreter's DVC (the venv's, whatever ``PATH`` says)."""
    return [sys.executable, "-m", "dvc", *args]


def trial_params(fixed: Sequence[str], conf: Path = CONF) -> tuple[dict[str, Any], str | None]:
    """The params a trial starts from before its drawn values, and a note when the workspace's
    ``params.yaml`` is not them.

    ``dvc exp run -S`` with Hydra composition on (``conf/config.yaml``, as this project ships)
    composes ``params.yaml`` afresh from ``conf/`` and the overrides: a trial sees ``fixed`` (a
    preset, a folder of photos) and its draws, never an edit made to ``params.yaml`` alone. Without
    ``conf/``, DVC sets the overrides into ``params.yaml``, as here."""
    from dllabs.params import PARAMS_FILE, parse_yaml, read_yaml
    from dllabs.tooling.presets import compose_yaml, stale_params

    shown = " ".join(f"-S {override}" for override in fixed) or "no -S"
    if not (conf / "config.yaml").is_file():
        params = read_yaml(PARAMS_FILE)
        for override in fixed:
            key, value = override.split("=", 1)
            set_key(params, key, parse_yaml(value, f"-S {override}"))
        return params, None
    params = parse_yaml(compose_yaml(list(fixed), conf), f"{conf}/ with {shown}")
    workspace = Path(PARAMS_FILE)
    # params.yaml is either what `make params` writes (conf/ alone) or conf/ with these -S (a
    # preset written with them); anything else holds edits no trial would see.
    if (
        workspace.is_file()
        and stale_params(workspace, conf, list(fixed))
        and stale_params(workspace, conf)
    ):
        return params, (
            f"{PARAMS_FILE} is not {conf}/ composed with {shown}; every trial starts from that "
            "composition, as dvc exp run does, not from params.yaml (give a preset or a folder "
            "as -S, such as -S dataset=photos -S data.images_dir=...)"
        )
    return params, None


def run_experiment(
    name: str,
    overrides: Mapping[str, Any],
    target: str,
    env: Mapping[str, str],
    log: Path,
    fixed: Sequence[str] = (),
) -> Run:
    """``dvc exp run --temp --name name -S fixed ... -S key=value ... target``, its output in
    ``log``: ``fixed`` as given (Hydra's grammar), then the drawn values."""
    settings = [arg for override in fixed for arg in ("-S", override)]
    settings += [
        arg for key, value in overrides.items() for arg in ("-S", f"{key}={override_value(value)}")
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        # A process group of its own, so that stopping the search (Ctrl-C, SIGTERM) stops the
        # experiment's stages too, not only DVC.
        process = subprocess.Popen(
            dvc("exp", "run", "--temp", "--name", name, *settings, target),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        try:
            while True:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)
                    break
                if STOPPING.is_set():
                    _stop(process)
                    break
        except BaseException:  # Ctrl-C in the main thread (--workers 1)
            _stop(process)
            raise
    return Run(process.returncode, _reason(log), log, time.perf_counter() - start)


def _stop(process: subprocess.Popen) -> None:
    """End an experiment's process group: SIGINT first, which DVC and the stage take as Ctrl-C
    (DVC's ``finally`` blocks put back the workspace it changed while stashing the experiment and
    remove its temporary copy; SIGTERM would end it without them, leaving ``params.yaml``
    modified), then SIGTERM after 20 s and SIGKILL after 10 more."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return


def _reason(log: Path) -> str:
    """The stage's one-line error in ``log`` (``<stage>: error: ...``), else DVC's, else its
    last line."""
    lines = [
        line.strip()
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip()
    ]
    for marker in (": error: ", "ERROR: "):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1]
    return lines[-1] if lines else ""


def baseline() -> str:
    """The commit experiments are run from (``HEAD``)."""
    return _git("rev-parse", "HEAD").strip()


def experiment_ref(name: str, base: str) -> str | None:
    """The git ref of experiment ``name`` on ``base``, or None."""
    ref = f"refs/exps/{base[:2]}/{base[2:]}/{name}"
    done = subprocess.run(["git", "show-ref", "--verify", "--quiet", ref], check=False)
    return ref if done.returncode == 0 else None


def experiment_names(base: str, prefix: str) -> list[str]:
    """The experiments on ``base`` whose names start with ``prefix``."""
    refs = _git("for-each-ref", "--format=%(refname)", f"refs/exps/{base[:2]}/{base[2:]}/")
    names = [ref.rsplit("/", 1)[-1] for ref in refs.split()]
    return sorted(name for name in names if name.startswith(prefix))


def read_metrics(ref: str, path: str) -> dict:
    """A metrics file as the experiment at ``ref`` wrote it: from git where it is committed
    (``cache: false``, the test metrics), else from DVC's cache by the md5 its ``dvc.lock``
    records (the validation metrics, cached so that the training stages stay in the run cache)."""
    from dllabs.outputs import load_json

    try:
        if _in_git(ref, path):
            return json.loads(_git("show", f"{ref}:{path}"))
        return load_json(_cached(ref, path))
    except (DataError, ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{ref}: no readable {path} ({exc})") from None


def epoch_losses(ref: str, history: str) -> list[float]:
    """The validation loss of each epoch that the training at ``ref`` logged with DVCLive in
    ``history`` (``<history>/plots/metrics/eval/loss.tsv``, from DVC's cache)."""
    from dllabs.outputs import load_json

    manifest = load_json(_cached(ref, history))
    wanted = "plots/metrics/eval/loss.tsv"
    found = [
        entry.get("md5")
        for entry in manifest
        if isinstance(entry, dict) and entry.get("relpath") == wanted
    ]
    if not found:
        raise DataError(f"{ref}: {history} holds no {wanted}")
    table = _cache_path(found[0])
    # A header (step, loss), then a row per epoch: a pulled experiment's file, sized before it
    # is read.
    if table.stat().st_size > MAX_HISTORY_BYTES:
        raise DataError(f"{ref}: {history}/{wanted} is over {MAX_HISTORY_BYTES} bytes")
    rows = table.read_text(encoding="utf-8").splitlines()[1:]
    return [float(row.split("\t")[1]) for row in rows if row.strip()]


def _in_git(ref: str, path: str) -> bool:
    done = subprocess.run(
        ["git", "cat-file", "-e", f"{ref}:{path}"], capture_output=True, check=False
    )
    return done.returncode == 0


def _cached(ref: str, path: str) -> Path:
    """The DVC cache's copy of the output ``path`` recorded in ``ref``'s ``dvc.lock``."""
    import yaml

    lock = yaml.safe_load(_git("show", f"{ref}:dvc.lock")) or {}
    found = [
        out.get("md5")
        for stage in (lock.get("stages") or {}).values()
        for out in stage.get("outs") or []
        if out.get("path") == path
    ]
    if not found or not found[0]:
        raise DataError(f"{path} is not an output in {ref}'s dvc.lock")
    cached = _cache_path(found[0])
    if not cached.is_file():
        raise DataError(f"{path} (md5 {found[0]}) is not in the DVC cache; dvc exp pull it")
    return cached


def lookup(metrics: dict, dotted: str) -> Any:
    """``metrics["a"]["b"]`` for ``a.b``; None where a part is missing."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def scored(metrics: dict, dotted: str) -> tuple[float, float | None, float | None, int | None]:
    """A headline metric with its 95% interval and test-set size, as the evaluate stages write
    them: ``a.b`` beside ``a.ci95.b`` (``low``, ``high``) and ``a.n``."""
    parent, _, name = dotted.rpartition(".")
    prefix = f"{parent}." if parent else ""
    interval = lookup(metrics, f"{prefix}ci95.{name}") or {}
    return (
        float(lookup(metrics, dotted)),
        interval.get("low"),
        interval.get("high"),
        lookup(metrics, f"{prefix}n"),
    )


def apply(name: str) -> str:
    """``dvc exp apply name``: "" when it worked, else its one-line reason."""
    return _dvc_problem("exp", "apply", name)


def push(remote: str, name: str) -> str:
    """``dvc exp push remote name`` (git refs to the git remote, outputs to the DVC remote): ""
    when it worked, else its one-line reason."""
    return _dvc_problem("exp", "push", remote, name)


def _dvc_problem(*args: str) -> str:
    done = subprocess.run(dvc(*args), capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["failed"])[-1].strip()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def _cache_path(oid: str) -> Path:
    """Where the local DVC cache keeps the object ``oid`` (wherever ``dvc cache dir`` put it)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return Path(repo.cache.local.oid_to_path(oid))
