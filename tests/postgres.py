"""A real PostgreSQL server on 127.0.0.1 for the tests of studies shared by several machines
(tests/test_tuning_shared.py): no mock, and no SQLite standing in for it.

The server is PostgreSQL 16 as the ``pgserver`` package bundles it (a dev dependency, locked in
uv.lock), started from its binaries (``initdb``, ``postgres``) rather than through pgserver's own
API, which listens on a unix socket only, trusts every local login, and as root creates a system
user and opens up the permissions of every folder above its data. Here:

- the cluster lives in a new folder of the system's temporary folder, removed at the end;
- the server listens on 127.0.0.1 only, on a free port, with no unix socket, and every login asks
  for a password (``scram-sha-256``, PostgreSQL's default password hashing since 14);
- a login role and a database owned by it are created for the studies, as a team's database
  administrator would, so the tests connect as an ordinary user, not the superuser;
- PostgreSQL refuses to run as root: under root (containers, CI) it runs as ``nobody``, from a
  copy of the binaries, since ``nobody`` may not be able to reach the virtualenv's own copy
  (below ``/root``, say).

Every wait is bounded: ``initdb`` and each statement within :data:`COMMAND_SECONDS`, the start
within :data:`START_SECONDS` (a server that exits or never answers fails then, with the end of its
log), the stop within :data:`STOP_SECONDS` before the server is killed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
USER = "tuner"
DATABASE = "studies"
COMMAND_SECONDS = 60  # initdb (about 2 s) or one statement, on 2 busy cores
START_SECONDS = 30  # from `postgres` started to its first accepted login (under 1 s)
STOP_SECONDS = 15  # a fast shutdown (SIGINT), then SIGKILL
PORT_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it
# The account the server runs as under root: one every Linux system has, owning nothing else.
UNPRIVILEGED = "nobody"


@dataclass(frozen=True)
class Postgres:
    """A running server: where it listens and the study role's credentials."""

    port: int
    user: str
    password: str
    database: str
    log: Path

    def url(self, password: str | None = None, database: str | None = None) -> str:
        """``postgresql://user:password@127.0.0.1:port/database``, as ``dl-labs tune --storage``
        takes it; another ``password`` or ``database`` for the tests of refused logins."""
        password = self.password if password is None else password
        return f"postgresql://{self.user}:{password}@{HOST}:{self.port}/{database or self.database}"


class ServerError(RuntimeError):
    """The server could not be set up: what failed, with the end of its output."""


@contextmanager
def postgres_server(user: str = USER, database: str = DATABASE) -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 with the login role ``user`` (a random password) and its
    database ``database``; stopped, and its folder removed, when the block ends."""
    scratch = Path(tempfile.mkdtemp(prefix="dl-labs-postgres-"))
    try:
        account = _server_account()
        binaries = _binaries(scratch, account)
        data, log = scratch / "data", scratch / "postgres.log"
        admin_password = secrets.token_urlsafe(16)
        _initdb(binaries, scratch, data, admin_password, account)
        server, port = _start(binaries, data, log, admin_password, account)
        try:
            password = secrets.token_urlsafe(16)
            _create_study_database(port, admin_password, user, password, database, log)
            yield Postgres(port, user, password, database, log)
        finally:
            _stop(server)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``postgresql://tuner:<password>@127.0.0.1:<port>/studies`` of a server for the module."""
    with postgres_server() as server:
        yield server.url()


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: this process's own, or :data:`UNPRIVILEGED` under root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise ServerError(
            f"running as root, and there is no {UNPRIVILEGED!r} account to run PostgreSQL as "
            "(it refuses to run as root)"
        ) from None


def _binaries(scratch: Path, account: pwd.struct_passwd | None) -> Path:
    """The folder of pgserver's ``initdb`` and ``postgres``, copied for another account, with
    what they load from beside them: ``lib`` and ``share``, and the wheel's ``pgserver.libs``
    (libpq), which their run path names as ``$ORIGIN/../../../pgserver.libs``."""
    spec = find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ServerError("pgserver is not installed; run make install (the dev extra)")
    package = Path(spec.origin).parent
    if account is None:
        return package / "pginstall" / "bin"
    copy = scratch / "site-packages"
    shutil.copytree(package / "pginstall", copy / "pgserver" / "pginstall", symlinks=True)
    if (package.parent / "pgserver.libs").is_dir():
        shutil.copytree(package.parent / "pgserver.libs", copy / "pgserver.libs", symlinks=True)
    for path in (copy, *copy.rglob("*")):
        if not path.is_symlink():  # readable by all, and executable where its owner may run it
            mode = path.stat().st_mode
            path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))
    return copy / "pgserver" / "pginstall" / "bin"


def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a command as ``account`` (no other groups)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _own(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _initdb(
    binaries: Path, scratch: Path, data: Path, password: str, account: pwd.struct_passwd | None
) -> None:
    """A new cluster in ``data``: the superuser's password from a file the server's account can
    read, and a password (scram-sha-256) asked of every login, local or over TCP."""
    _own(scratch, account)
    secret = scratch / "superuser-password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    _own(secret, account)
    command = [
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-U",
        SUPERUSER,
        f"--pwfile={secret}",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
            cwd=scratch,
            **_as(account),
        )
    except subprocess.TimeoutExpired:
        raise ServerError(f"initdb did not finish within {COMMAND_SECONDS} s") from None
    finally:
        secret.unlink(missing_ok=True)
    if done.returncode != 0:
        raise ServerError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _start(
    binaries: Path, data: Path, log: Path, password: str, account: pwd.struct_passwd | None
) -> tuple[subprocess.Popen, int]:
    """``postgres`` on a free port of 127.0.0.1, once it accepts the superuser's login."""
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        # Durability is not under test: without fsync the studies' writes cost no disk flushes.
        command = [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
        ]
        with log.open("ab") as output:
            # In this process's group, so that Ctrl-C reaches the server too.
            server = subprocess.Popen(
                _tied_to_this_process(command),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=data.parent,
                **_as(account),
            )
        deadline = time.monotonic() + START_SECONDS
        while server.poll() is None and time.monotonic() < deadline:
            if _accepts(port, SUPERUSER, password, "postgres"):
                return server, port
            time.sleep(0.1)
        if server.poll() is None:
            _stop(server)
            raise ServerError(
                f"PostgreSQL did not accept a login within {START_SECONDS} s:\n{_tail(log)}"
            )
        if "could not bind" not in _tail(log) and "could not create" not in _tail(log):
            break
    raise ServerError(f"PostgreSQL exited at its start ({server.returncode}):\n{_tail(log)}")


def _tied_to_this_process(command: list[str]) -> list[str]:
    """``command`` under util-linux's ``setpriv --pdeathsig INT`` where it has the option: should
    this process die without stopping the server (SIGKILL, a CI job's timeout), the kernel sends
    the server a fast shutdown rather than leave it running."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command
    tied = [setpriv, "--pdeathsig", "INT", "--"]
    try:
        probe = subprocess.run(
            [*tied, "true"], capture_output=True, timeout=COMMAND_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return command
    return [*tied, *command] if probe.returncode == 0 else command


def _accepts(port: int, user: str, password: str, database: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host=HOST, port=port, user=user, password=password, dbname=database, connect_timeout=2
        ):
            return True
    except psycopg.OperationalError:
        return False


def _create_study_database(
    port: int, admin_password: str, user: str, password: str, database: str, log: Path
) -> None:
    """The role ``user`` (login, not a superuser) and the database ``database`` it owns, where
    Optuna creates its tables."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(
            host=HOST,
            port=port,
            user=SUPERUSER,
            password=admin_password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=COMMAND_SECONDS,
        ) as admin:
            admin.execute(f"SET statement_timeout = '{COMMAND_SECONDS}s'")
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(user)
                )
            )
    except psycopg.Error as exc:
        raise ServerError(
            f"creating the role {user} and database {database} failed: {exc}\n{_tail(log)}"
        ) from None


def _stop(server: subprocess.Popen) -> None:
    """A fast shutdown (clients disconnected, no wait for them), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, STOP_SECONDS), (signal.SIGKILL, 5)):
        if server.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=wait)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
