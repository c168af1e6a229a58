"""Data the tests make: a tiny corpus, folders of images, crafted files (a PNG header claiming
gigapixels, a pickle that would run code), arrays on disk."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from dllabs.data.arrays import save_npy

# A corpus small enough for tests, in which words share contexts (king and queen, man and woman).
TINY_CORPUS = [
    ["the", "king", "rules", "the", "land"],
    ["the", "queen", "rules", "the", "land"],
    ["a", "man", "walks", "the", "dog"],
    ["a", "woman", "walks", "the", "dog"],
] * 25


def make_image_folder(root: Path, classes: dict[str, int], size=(12, 10)) -> None:
    rng = np.random.default_rng(4)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'bmp'}")


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it:
    a few hundred bytes that would take gigabytes to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


class CreatesAFile:
    """Unpickled, it opens (so creates) the file it names: a stand-in for any code a crafted
    pickle could run. Tests check that the file never appears."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


def save_arrays(folder: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """One ``<name>.npy`` per array in ``folder`` (created if missing), as the processed images
    are stored."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        save_npy(folder / f"{name}.npy", array)
