"""What the checks on hostile files cost: the block scan before a CSV is parsed, and the
hole-keeping copy of bring-your-own files, each against the plain call it wraps, in one run.

- CSV: ``read_labelled_csv`` as it is (a scan in 1 MiB blocks for NUL bytes, UTF-8 and line
  length, then pandas and the cell checks) against the same function with the scan left out;
- copies: ``dllabs.data.fetch.copy_file`` (``SEEK_DATA``/``SEEK_HOLE``, 1 MiB reads) against
  ``shutil.copyfile`` (``sendfile``), on a folder of small image-sized files and on one large file,
  and the disk each copy of a sparse file takes.

Timings alternate A, B, A, B over ``--repeats`` rounds (these machines drift); the median of each
and the median of the pair-by-pair ratios are written to ``benchmarks/results/safe_io.json``.

    python benchmarks/safe_io.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dllabs.data.fetch import copy_file
from dllabs.data.readers import read_labelled_csv
from dllabs.provenance import platform_record

RESULTS = Path(__file__).resolve().parent / "results" / "safe_io.json"


def paired(first: Callable[[], object], second: Callable[[], object], repeats: int) -> dict:
    """Median seconds of each, alternating, and the median of the pair-by-pair ratios."""
    a, b = [], []
    first(), second()  # warm the page cache and imports
    for _ in range(repeats):
        for runs, call in ((a, first), (b, second)):
            start = time.perf_counter()
            call()
            runs.append(time.perf_counter() - start)
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {
        "checked_s": round(statistics.median(a), 4),
        "plain_s": round(statistics.median(b), 4),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def csv_case(root: Path, rows: int, columns: int, repeats: int) -> dict:
    from dllabs.data import readers

    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(size=(rows, columns)).round(5), rng.integers(0, 2, rows)])
    path = root / "rows.csv"
    np.savetxt(path, table, delimiter=",", fmt="%.5g")
    scan = readers.check_text_file

    def unscanned() -> None:
        readers.check_text_file = lambda *args, **kwargs: None
        try:
            read_labelled_csv(path, -1)
        finally:
            readers.check_text_file = scan

    result = paired(lambda: read_labelled_csv(path, -1), unscanned, repeats)
    start = time.perf_counter()
    scan(path)
    scan_seconds = round(time.perf_counter() - start, 4)
    return {
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "rows": rows,
        "columns": columns + 1,
        "scan_alone_s": scan_seconds,
        **result,
    }


def copy_case(root: Path, count: int, size: int, repeats: int) -> dict:
    source = root / f"files-{count}"
    source.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        (source / f"{i}.jpg").write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())

    def copy_all(copy: Callable[[Path, Path], object]) -> Callable[[], None]:
        def run() -> None:
            target = root / "target"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for file in source.iterdir():
                copy(file, target / file.name)

        return run

    return {
        "files": count,
        "file_kb": size // 1024,
        **paired(copy_all(copy_file), copy_all(shutil.copyfile), repeats),
    }


def sparse_case(root: Path) -> dict:
    source = root / "sparse.bin"
    with source.open("wb") as handle:
        handle.seek(256 * 2**20)
        handle.write(b"end")
    disk = {}
    for name, copy in (("checked", copy_file), ("plain", shutil.copyfile)):
        start = time.perf_counter()
        copy(source, root / name)
        disk[name] = {
            "seconds": round(time.perf_counter() - start, 4),
            "disk_kb": (root / name).stat().st_blocks // 2,
        }
        (root / name).unlink()
    return {
        "apparent_mb": round(source.stat().st_size / 1e6),
        "source_disk_kb": source.stat().st_blocks // 2,
        **disk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="safe-io-") as tmp:
        root = Path(tmp)
        results = {
            "csv": csv_case(root, 100_000, 140, args.repeats),  # ECG5000-like rows, 20x the file
            "copy_small_files": copy_case(root, 1000, 24 * 1024, args.repeats),  # photo folder
            "copy_large_file": copy_case(root, 1, 256 * 2**20, args.repeats),
            "sparse_file": sparse_case(root),
            "platform": platform_record(),
        }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name, result in results.items():
        if name != "platform":
            print(f"{name}: {json.dumps(result)}")


if __name__ == "__main__":
    main()
