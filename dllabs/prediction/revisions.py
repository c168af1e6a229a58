"""Where ``dl-labs predict`` reads models from: the workspace, or any revision of the repository
(a commit, branch, tag or experiment name), through DVC's file system from the local cache or the
configured remote, into a temporary folder: the workspace is not touched. A file the revision
lacks, a cache that lacks it and a remote that cannot be read are each one line naming it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dllabs.errors import DataError, one_line, paths_shown_as


class Source:
    """Model files from the workspace, or from one revision of the DVC repository."""

    def __init__(self, rev: str | None, workdir: Path) -> None:
        self.rev = rev
        self._workdir = workdir
        self._fs: Any = None

    def path(self, relative: str | Path) -> Path:
        """A local path holding ``relative``: the workspace's own, or a copy of the revision's."""
        if self.rev is None:
            return Path(relative)
        local = self._workdir / relative
        if not local.exists():
            self._get(str(Path(relative).as_posix()), local)
        return local

    def _get(self, relative: str, local: Path) -> None:
        fs = self._open()
        if not fs.exists(relative):
            raise DataError(f"{relative}: not in revision {self.rev} (is that lab built there?)")
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get(relative, str(local), recursive=fs.isdir(relative))
        except Exception as exc:  # DVC's missing-cache errors have no common base
            raise DataError(self._unreadable(relative, exc)) from None

    def _unreadable(self, relative: str, exc: Exception) -> str:
        """Why ``relative`` could not be read: the remote's own failure (it does not answer,
        refuses the credentials, has no such bucket or folder), else the file is in neither the
        cache nor the remote. DVC reports a bucket it cannot list as files it did not find, so
        the remote is listed once to tell the two apart."""
        missing = (
            f"{relative} at {self.rev}: not in the local DVC cache or the remote "
            f"(dvc pull, or dvc fetch at that revision) ({one_line(exc)})"
        )
        try:
            remote = self._fs.repo.cloud.get_remote()
        except Exception:  # no remote configured, or its configuration is invalid
            return missing
        try:
            remote.fs.ls(remote.path)
        except Exception as reason:
            url = remote.fs.unstrip_protocol(remote.path)
            text = one_line(reason) or type(reason).__name__
            if isinstance(reason, OSError) and reason.errno in errno.errorcode:
                text += f" ({errno.errorcode[reason.errno]})"
            return f"cannot read {self.rev}'s models from remote '{remote.name}' ({url}): {text}"
        return missing

    def _open(self) -> Any:
        if self._fs is None:
            from dvc.api import DVCFileSystem
            from dvc.exceptions import DvcException, NotDvcRepoError
            from dvc.repo import Repo
            from dvc.scm import RevError, resolve_rev

            try:
                root = Repo.find_root()
            except NotDvcRepoError:
                raise DataError(
                    f"--rev {self.rev}: {Path.cwd()} is not in a DVC repository"
                ) from None
            try:
                with Repo(root) as repo:
                    sha = resolve_rev(repo.scm, self.rev)
            except (RevError, DvcException) as exc:
                raise DataError(
                    f"--rev {self.rev}: not a commit, branch, tag or experiment of this "
                    f"repository ({one_line(exc)})"
                ) from None
            self._fs = DVCFileSystem(root, rev=sha)
        return self._fs


@contextmanager
def model_source(rev: str | None) -> Iterator[Source]:
    """A :class:`Source`; errors about a revision's files name them as ``REV:path``, git's own
    notation, not as the temporary copy they were read into."""
    with (
        tempfile.TemporaryDirectory(prefix="dl-labs-predict-") as workdir,
        paths_shown_as(f"{workdir}{os.sep}", f"{rev}:"),
    ):
        yield Source(rev, Path(workdir))
