"""The one loader of saved ``.keras`` models: evaluation stages, the transfer lab's pretrained
base and ``dl-labs predict`` all open models through :func:`load_model`, so none of them can
run code a crafted file carries."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from dllabs.errors import DataError, one_line

if TYPE_CHECKING:
    import keras


# A .keras file is a zip archive that Keras writes uncompressed, so its contents are about its own
# size; one that unpacks to far more is a zip bomb (a few KB of deflated zeros become gigabytes).
MAX_UNPACKED_RATIO = 64


def load_model(path: Path) -> keras.Model:
    """A saved ``.keras`` model, loaded without running any serialized code: ``safe_mode`` refuses
    Lambda layers' Python bytecode, and Keras deserializes only its own registered classes. A
    file that is not a whole ``.keras`` archive, or that unpacks to far more than its size, is
    refused before Keras opens it; any failure is one line naming the file.
    """
    import keras  # here, so that the gensim-only stages never import TensorFlow

    if not path.is_file():
        raise DataError(f"{path}: not found; run the training stage that writes it (dvc repro)")
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, EOFError):
        raise DataError(
            f"{path}: truncated or not a Keras file (a .keras file is a zip archive)"
        ) from None
    if unpacked > MAX_UNPACKED_RATIO * path.stat().st_size + 2**20:
        raise DataError(
            f"{path}: unpacks to {unpacked:,} bytes from {path.stat().st_size:,} (a zip bomb?); "
            "refused unread"
        )
    import dllabs.models.applications  # noqa: F401 - registers the project's own layers for loading

    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for a file it cannot rebuild
        if "is a Python lambda" in str(exc):
            raise DataError(
                f"{path}: holds a Lambda layer's Python bytecode, which loading would run; refused"
            ) from None
        raise DataError(f"{path}: not a loadable Keras model ({_keras_reason(exc)})") from None


def _keras_reason(exc: Exception) -> str:
    """The cause in Keras's message: a failure deep in a model is wrapped once per enclosing
    layer, each wrapper repeating the whole config; the innermost one says what was wrong."""
    text = str(exc).rsplit("Exception encountered:", 1)[-1].strip()
    return one_line(text.split(". ", 1)[0], 200)
