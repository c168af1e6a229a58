"""Training on several processes (one machine or many) with Keras's distribution engine on JAX.

A launcher starts the same stage command once per process and tells each, in its environment,
how many processes there are, which one it is and where process 0 (the coordinator) listens:

- Keras's own variables: ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``
  and ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (process 0's ``host:port``, or every process's,
  comma-separated, the first being the coordinator's);
- SLURM's (``srun``): ``SLURM_NTASKS`` and ``SLURM_PROCID``; the coordinator is the first node of
  the step on a port derived from the job id, as JAX's own SLURM detection chooses them, unless
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` names one;
- a Kubernetes indexed job's: ``JOB_COMPLETION_INDEX`` is the process index; the count and the
  coordinator (pod 0's stable name under the job's headless service) come from the Keras variables
  the manifest sets.

:func:`join` (run by :func:`dllabs.training.startup.start_keras_stage` before anything starts JAX: a
JAX that has probed its devices stays single-process, jax-ml/jax#12258) calls
``jax.distributed.initialize``, the call ``keras.distribution.initialize`` makes on JAX, with time
limits; :mod:`dllabs.training.devices` then sets ``keras.distribution.DataParallel`` over every
process's devices. Each process feeds its share of every global batch, the gradients are averaged
across processes every step, and every process ends with the same weights. Only process 0 writes
outputs (``dllabs.outputs``).

JAX ends a process with a C++ stack trace when a peer vanishes or never connects. A watchdog
thread says it in one line first and exits 1, its staged outputs discarded: each process bumps a
counter in JAX's key-value store every second, and a peer whose counter has not moved for
``DL_LABS_CLUSTER_TIMEOUT`` seconds (default 120; also how long to wait for every process to
join) is taken for dead. JAX's own limits are set longer, so this message comes first.

TensorFlow's ``MultiWorkerMirroredStrategy`` does not train through Keras 3's ``fit``
(keras-team/keras#20585) and Keras on PyTorch has no multi-process distribution: with more than one
process they are refused, naming the JAX backend. Imports JAX only when there is a cluster.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from dllabs.errors import ParamsError
from dllabs.processes import distributed

TIMEOUT_ENV = "DL_LABS_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
# JAX takes its time limits as C ints (1e300 raised a TypeError inside jaxlib, inf an
# OverflowError here); no launcher starts its processes a day apart.
MAX_TIMEOUT = 86400.0
# Launchers write plain ASCII numbers. Python's int() and str.isdigit() also take other scripts'
# digits (int("٢") is 2; "¹²³".isdigit() is true, yet int() refuses it) and any length up to
# 4,300 digits.
_WHOLE = re.compile(r"[0-9]{1,18}")
# A host name or IPv4 address of ASCII labels, or a bracketed IPv6 address: the socket calls
# encode a host with IDNA, which raises a UnicodeError (no OSError) for an empty label or one
# over 63 characters.
_HOST = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?"  # names, IPv4
    r"|\[[0-9A-Fa-f:.]{2,45}\]"  # [IPv6]
)
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?")
_BEAT_SECONDS = 1.0


@dataclass(frozen=True)
class Cluster:
    """The processes training together, as this process sees them."""

    processes: int
    index: int
    coordinator: str  # host:port of process 0's coordination service
    source: str  # which environment said so (for messages)

    @property
    def primary(self) -> bool:
        """Process 0: the one that writes outputs."""
        return self.index == 0

    def describe(self) -> str:
        return f"process {self.index} of {self.processes}, coordinator {self.coordinator}"


def current() -> Cluster | None:
    """The cluster :func:`join` joined in this process (as the environment describes it, once
    JAX's distributed runtime says this process joined one); None when training alone."""
    return from_environment() if distributed() else None


def _shown(text: str) -> str:
    """A variable's value quoted for a message, cut short: it may be thousands of characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _integer(env: Mapping[str, str], key: str, low: int) -> int:
    text = env[key].strip()
    value = int(text) if _WHOLE.fullmatch(text) else low - 1
    if value < low:
        raise ParamsError(f"{key}={_shown(text)}: expected a whole number >= {low}")
    return value


def _slurm_coordinator(env: Mapping[str, str]) -> str:
    """Process 0's address under ``srun``, by JAX's own rule (``jax._src.clusters.slurm_cluster``):
    the step's first node, on port ``61440 + job id % 4096``."""
    nodes = (env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")).strip()
    job = env.get("SLURM_JOB_ID", "").strip()
    if not nodes or not job:
        return ""
    if not _WHOLE.fullmatch(job):
        raise ParamsError(f"SLURM_JOB_ID={_shown(job)}: expected a whole number (SLURM's job id)")
    head = nodes.split(",", 1)[0] if "[" not in nodes.split(",", 1)[0] else nodes
    if "[" in head:  # node[001-015,020],gpu1 -> node001
        prefix, suffix = head.split("[", 1)
        head = prefix + suffix.replace("-", ",").split(",", 1)[0].rstrip("]")
    return f"{head}:{int(job) % 2**12 + 65535 - 2**12 + 1}"


def from_environment(env: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster a launcher described in ``env`` (``os.environ``); None for one process.

    Raises :class:`ParamsError` naming the variable for a count, an index or an address that
    cannot be one.
    """
    env = os.environ if env is None else env
    addresses = env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "").strip()
    if "KERAS_DISTRIBUTION_NUM_PROCESSES" in env:
        source, count_key = "Keras", "KERAS_DISTRIBUTION_NUM_PROCESSES"
        index_key = (
            "KERAS_DISTRIBUTION_PROCESS_ID"
            if "KERAS_DISTRIBUTION_PROCESS_ID" in env or "JOB_COMPLETION_INDEX" not in env
            else "JOB_COMPLETION_INDEX"
        )
        if index_key == "JOB_COMPLETION_INDEX":
            source = "Kubernetes indexed job"
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        source, count_key, index_key = "SLURM", "SLURM_NTASKS", "SLURM_PROCID"
        addresses = addresses or _slurm_coordinator(env)
    else:
        return None
    processes = _integer(env, count_key, 1)
    if processes == 1:
        return None
    if index_key not in env:
        raise ParamsError(f"{count_key} is {processes} but {index_key} is not set")
    index = _integer(env, index_key, 0)
    if index >= processes:
        raise ParamsError(f"{index_key}={index}: expected 0 to {processes - 1} ({count_key})")
    listed = [a.strip() for a in addresses.split(",") if a.strip()]
    if not listed:
        raise ParamsError(
            f"{count_key} is {processes} but KERAS_DISTRIBUTION_JOB_ADDRESSES is not set: "
            "expected process 0's host:port"
        )
    if len(listed) > 1 and len(listed) != processes:
        raise ParamsError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(listed)} addresses for {processes} "
            f"processes ({count_key}): expected one (the coordinator's) or one per process"
        )
    host, _, port = listed[0].rpartition(":")
    if not _HOST.fullmatch(host) or not _WHOLE.fullmatch(port) or not 0 < int(port) < 65536:
        raise ParamsError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES: {_shown(listed[0])} is not host:port "
            "(process 0's address and a free port)"
        )
    return Cluster(processes, index, listed[0], source)


def timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    """``DL_LABS_CLUSTER_TIMEOUT`` in seconds (a plain decimal number, > 0 and at most a day)."""
    env = os.environ if env is None else env
    text = env.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    value = float(text) if _SECONDS.fullmatch(text) else 0.0
    if not 0 < value <= MAX_TIMEOUT:
        raise ParamsError(
            f"{TIMEOUT_ENV}={_shown(text)}: expected seconds, a number > 0 and <= {MAX_TIMEOUT:g}"
        )
    return value


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _check_reachable(cluster: Cluster, timeout: float) -> None:
    """Fail in one line, before JAX would abort, where the coordinator cannot be: process 0
    must own the address (and the port be free); the others must reach it in time."""
    host, port = _split(cluster.coordinator)
    where = f"{cluster.coordinator} ({cluster.describe()}, from {cluster.source})"
    if cluster.primary:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ParamsError(f"cannot listen as the coordinator on {where}: {reason}") from None
        return
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError as exc:
            last = exc.strerror or str(exc)
            time.sleep(0.5)
    raise ParamsError(f"cannot reach the coordinator {where} within {timeout:g} s: {last}")


def abandon(message: str) -> NoReturn:
    """Print one line and end this process now, its staged outputs discarded: a cluster that lost
    a process cannot finish, and Python's exit would wait for the lost one (JAX's shutdown
    barrier); the main thread may also be blocked inside JAX."""
    from dllabs.outputs import discard_open

    print(f"error: {message}", file=sys.stderr, flush=True)
    discard_open()
    os._exit(1)


def _deadline(seconds: float, message: str) -> threading.Event:
    """An event that, unless set within ``seconds``, ends the process with ``message``."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(seconds):
            abandon(message)

    threading.Thread(target=watch, name="dl-labs-cluster-join", daemon=True).start()
    return done


def _watch_peers(cluster: Cluster, client: object, timeout: float) -> None:
    """Bump this process's counter every second; end the process when a peer's stops."""
    key = "dl_labs/alive/"
    last_change = {p: time.monotonic() for p in range(cluster.processes) if p != cluster.index}
    seen: dict[int, str] = {}

    def beat() -> None:
        count = 0
        while True:
            count += 1
            try:
                client.key_value_set(f"{key}{cluster.index}", str(count), allow_overwrite=True)
                values = dict(client.key_value_dir_get(key))
            except Exception as exc:  # JAX raises its own types when the service is gone
                abandon(f"lost the coordinator {cluster.coordinator} ({cluster.describe()}): {exc}")
            now = time.monotonic()
            for peer in last_change:
                value = values.get(f"{key}{peer}")
                if value is not None and value != seen.get(peer):
                    seen[peer], last_change[peer] = value, now
                elif now - last_change[peer] > timeout:
                    abandon(
                        f"process {peer} of {cluster.processes} stopped answering for "
                        f"{timeout:g} s ({TIMEOUT_ENV}); training stopped, nothing written"
                    )
            time.sleep(_BEAT_SECONDS)

    threading.Thread(target=beat, name="dl-labs-cluster-peers", daemon=True).start()


def one_process_only(cluster: Cluster) -> ParamsError:
    return ParamsError(
        f"this stage runs on one process, but {cluster.source}'s variables start "
        f"{cluster.processes}: start it once (the training stages that run on several are "
        "listed in docs/guides/backends-and-devices.md)"
    )


def join(
    backend: str,
    env: Mapping[str, str] | None = None,
    stage: str | None = None,
    multi_process: bool = False,
) -> Cluster | None:
    """Join the cluster the environment describes, if any; call before JAX starts.

    Raises :class:`ParamsError` for a backend other than JAX with more than one process, a
    ``stage`` that does not declare ``multi_process`` (refused before any process joins: one
    that leaves a cluster early makes JAX abort the others), bad variables, or a coordinator that
    cannot be listened on or reached.
    """
    cluster = from_environment(env)
    if cluster is None:
        return None
    if stage is not None and not multi_process:
        raise one_process_only(cluster)
    if backend != "jax":
        raise ParamsError(
            f"{cluster.processes} processes ({cluster.source}) need base.backend jax, Keras's "
            f"multi-process engine; base.backend is {backend!r}"
        )
    if distributed():  # joined already: JAX's runtime is one per process
        return cluster
    timeout = timeout_seconds(env)
    _check_reachable(cluster, timeout)
    import jax

    margin = 30  # JAX's own limits run longer, so that the one-line messages here come first
    joined = _deadline(
        timeout,
        f"the {cluster.processes} processes did not all join at {cluster.coordinator} within "
        f"{timeout:g} s ({cluster.describe()}; {TIMEOUT_ENV})",
    )
    jax.distributed.initialize(
        cluster.coordinator,
        cluster.processes,
        cluster.index,
        initialization_timeout=int(timeout) + margin,
        heartbeat_timeout_seconds=int(timeout) + margin,
    )
    joined.set()
    # JAX's key-value store has no public handle; its client is the one initialize() made.
    from jax._src import distributed as jax_distributed

    _watch_peers(cluster, jax_distributed.global_state.client, timeout)
    return cluster


def lost_peer(exc: BaseException) -> str | None:
    """The reason in one line when ``exc`` is a collective that failed because another process
    went away (JAX's ``JaxRuntimeError`` from Gloo or the coordination service); else None."""
    text = str(exc).strip()
    if type(exc).__name__ != "JaxRuntimeError" or not _LOST.search(text):
        return None
    return re.sub(r"\[[^\]]*\.cc:\d+\]\s*", "", text.splitlines()[0])


_LOST = re.compile(r"gloo|coordination|heartbeat|connection|peer", re.IGNORECASE)
