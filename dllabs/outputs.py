"""Writing stage outputs all-or-nothing, byte-for-byte reproducibly.

Two properties matter for a DVC pipeline:

- **Atomic**: a stage that fails leaves no half-written output behind. :class:`StagedOutputs` hands
  out temporary paths next to each final path and renames them into place, with the usual
  permissions, only when the whole stage body succeeded. A run killed outright leaves its
  temporaries; the next run of the stage removes them. A full disk or a folder that cannot be
  written is reported as one line naming the output, not the temporary.
- **One writer**: in a multi-process run (:mod:`dllabs.training.cluster`) only process 0 writes; the
others
  stage into a private temporary folder that is discarded, so DVC sees one set of outputs.
- **Deterministic**: the same arrays give the same bytes, so DVC sees an unchanged hash and does not
  rerun downstream stages. ``numpy.savez`` stamps the current time into its zip entries;
  :func:`save_npz` writes fixed timestamps instead. JSON is written with sorted keys.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from dllabs.errors import DataError, os_error
from dllabs.processes import is_primary

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# The largest JSON file the pipeline writes is a few MB (a CBOW vocabulary's metrics, a large
# folder's counts); one is read whole, so a larger one is refused unread.
MAX_JSON_BYTES = 64 * 2**20


class StagedOutputs:
    """Temporary stand-ins for a stage's outputs, committed together on success."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._created: list[Path] = []  # parent folders made for outputs, removed on discard
        # Processes other than 0 of a cluster write where nothing is kept (see the module doc).
        self._private = None if is_primary() else Path(tempfile.mkdtemp(prefix="dl-labs-"))
        _open.add(self)

    def _make_parent(self, final: Path) -> None:
        missing = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
        final.parent.mkdir(parents=True, exist_ok=True)
        self._created += missing

    def _handed_out(self, final: Path) -> Path | None:
        """The temporary already given for ``final``: asking twice gets the same one."""
        return next((tmp for tmp, f in self._pending if f == final), None)

    def file(self, final: str | Path) -> Path:
        """A temporary file path that becomes ``final`` on commit."""
        final = Path(final)
        if (tmp := self._handed_out(final)) is not None:
            return tmp
        if self._private is not None:
            return self._hand_out(Path(tempfile.mkdtemp(dir=self._private)) / final.name, final)
        try:
            self._make_parent(final)
            _remove_leftovers(final.parent, f".{glob.escape(final.stem)}.*.tmp{final.suffix}")
            # Keep the real suffix last: some writers (Keras's model.save) insist on it.
            fd, tmp = tempfile.mkstemp(
                prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent
            )
        except OSError as exc:
            raise DataError(f"cannot write {os_error(exc, final)}") from None
        os.close(fd)
        self._pending.append((Path(tmp), final))
        return Path(tmp)

    def dir(self, final: str | Path) -> Path:
        """An empty temporary directory that becomes ``final`` on commit (the same one, with what
        was written to it, when asked again)."""
        final = Path(final)
        if (tmp := self._handed_out(final)) is not None:
            return tmp
        if self._private is not None:
            folder = Path(tempfile.mkdtemp(dir=self._private)) / final.name
            folder.mkdir()
            return self._hand_out(folder, final)
        try:
            self._make_parent(final)
            _remove_leftovers(final.parent, f".{glob.escape(final.name)}.*.tmp")
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        except OSError as exc:
            raise DataError(f"cannot write {os_error(exc, final)}") from None
        self._pending.append((tmp, final))
        return tmp

    def _hand_out(self, tmp: Path, final: Path) -> Path:
        self._pending.append((tmp, final))
        return tmp

    def describe(self, exc: OSError) -> str:
        """``exc`` in one line, naming the output whose temporary it names (or every output)."""
        if exc.filename is None:
            finals = ", ".join(str(final) for _, final in self._pending) or "the outputs"
            return f"cannot write {finals}: {os_error(exc)}"
        written = Path(exc.filename)
        for tmp, final in self._pending:
            if written == tmp or tmp in written.parents:
                return f"cannot write {os_error(exc, final / written.relative_to(tmp))}"
        return os_error(exc)

    def commit(self) -> None:
        if self._private is not None:
            self.discard()
            return
        for tmp, final in self._pending:
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            _usual_permissions(tmp)
            os.replace(tmp, final)
        self._pending.clear()
        self._created.clear()
        _open.discard(self)

    def discard(self) -> None:
        _open.discard(self)
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
        for tmp, _ in self._pending:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self._pending.clear()
        deepest_first = sorted(self._created, key=lambda folder: len(folder.parts), reverse=True)
        for folder in deepest_first:  # a folder something else wrote to stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created.clear()


# The transactions in progress: what an emergency exit from another thread must clean up
# (discard_open). A registry of open resources, like atexit's; no call's result depends on it.
_open: set[StagedOutputs] = set()


def discard_open() -> None:
    """Discard every transaction in progress: for a process about to end itself from another
    thread (:mod:`dllabs.training.cluster`'s watchdog), where no ``except`` clause will run."""
    for staged in list(_open):
        staged.discard()


def _remove_leftovers(parent: Path, pattern: str) -> None:
    """Remove the temporaries of this output that a killed run left behind (SIGKILL skips every
    cleanup). DVC runs one stage at a time in a workspace, so none of them is still in use.
    """
    for leftover in parent.glob(pattern):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _usual_permissions(path: Path) -> None:
    """Give a temporary the mode a plain ``open``/``mkdir`` would have: ``mkstemp`` and
    ``mkdtemp`` make it private (0600/0700), unreadable to a team sharing the workspace or cache.
    """
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """Yield a :class:`StagedOutputs`; commit on success, discard everything on any error."""
    staged = StagedOutputs()
    try:
        yield staged
    except TimeoutError:  # an OSError by type, but no output's fault (NLTK's regex time limit)
        staged.discard()
        raise
    except OSError as exc:  # a full disk, a lost permission: one line naming the output
        message = staged.describe(exc)
        staged.discard()
        raise DataError(message) from None
    except BaseException:
        staged.discard()
        raise
    try:
        staged.commit()
    except OSError as exc:
        message = staged.describe(exc)
        staged.discard()
        raise DataError(message) from None


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays as an uncompressed ``.npz`` with fixed zip timestamps (reproducible bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if array.dtype == object:
                raise ValueError(f"array {name!r} has dtype object; store numbers or fixed strings")
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` (never unpickling), checking the required names exist.

    Each array's header is read first and checked against the size its zip entry records, and
    the arrays together against the machine's memory, before anything is allocated: an ``.npz``
    from a shared remote (``mnist.npz`` through a teammate's ``dvc push``) whose header claims
    10**12 values is refused in one line, not met with a ``MemoryError``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; run the stage that writes it (dvc repro)")
    try:
        claimed = sum(_npz_entry_bytes(path, entry) for entry in _npz_entries(path))
        if claimed > _memory_bytes() // 2:
            raise DataError(
                f"{path}: its arrays need {claimed:,} bytes, more than half this machine's memory"
            )
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}")
    return arrays


def npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, Fortran order and dtype of the ``.npy`` at ``handle``'s position, which is left
    at its first data byte. Versions 1.0 and 2.0 (what ``numpy.save`` writes for plain dtypes)."""
    version = np.lib.format.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    return reader(handle)


def _npz_entries(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def _npz_entry_bytes(path: Path, entry: zipfile.ZipInfo) -> int:
    """The bytes one ``.npy`` entry of an ``.npz`` needs, from its header, checked against the
    uncompressed size the zip records (which is all the zip module will inflate)."""
    with zipfile.ZipFile(path) as archive, archive.open(entry) as member:
        shape, _, dtype = npy_header(member)
        if dtype.hasobject:  # pickled Python objects: never loaded
            raise ValueError(f"{entry.filename} holds Python objects; refused unread")
        needed = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
        if member.tell() + needed != entry.file_size:
            raise DataError(
                f"{path}: {entry.filename} has a header for {shape} {dtype} ({needed:,} bytes) "
                f"but holds {entry.file_size - member.tell():,} (a corrupt or crafted file)"
            )
    return needed


def _memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def save_json(path: str | Path, payload: Any) -> None:
    """Write JSON with sorted keys and a trailing newline (stable diffs, stable hashes)."""
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable)
    Path(path).write_text(text + "\n", encoding="utf-8")


def load_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of at most ``max_bytes``, read whole: a larger one (a model folder's
    ``summary.json`` or a threshold file from a shared remote) is refused unread, and so is a
    FIFO or a device, which would block the read or never end."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run the stage that writes it (dvc repro)")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # no more than the limit, should it grow meanwhile
        if len(data) > max_bytes:
            raise DataError(
                f"{path}: over {max_bytes:,} bytes; the JSON files the pipeline reads hold a few "
                "KB to a few MB"
            )
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
