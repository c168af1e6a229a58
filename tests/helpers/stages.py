"""Running the stages in a test: their command lines as ``dvc.yaml`` gives them, in-process with
``fails``/``outcome`` or in a process of their own with ``run_stage``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOWNLOAD_ARGS = [
    "--images",
    "data/raw/images",
    "--anomaly",
    "data/raw/anomaly",
    "--text",
    "data/raw/text",
    "--text-eval",
    "data/raw/text_eval",
]


PREPROCESS_ARGS = [
    "--raw-images",
    "data/raw/images",
    "--raw-anomaly",
    "data/raw/anomaly",
    "--images",
    "data/processed/images",
    "--images-summary",
    "data/processed/images.json",
    "--series",
    "data/processed/series.npz",
    "--series-summary",
    "data/processed/series.json",
]


# train_mlp's paths as dvc.yaml gives them.
TRAIN_MLP_ARGS = [
    "--images",
    "data/processed/images",
    "--model",
    "models/mlp",
    "--plots",
    "plots/mlp",
    "--validation",
    "metrics/validation/mlp.json",
]
TOKENIZE_ARGS = [
    "--raw-text",
    "data/raw/text",
    "--corpus",
    "data/processed/corpus.txt",
    "--summary",
    "data/processed/corpus.json",
]


def fails(main, args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run a stage expecting a clean failure: exit code 1, no traceback, one error line last."""
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert ": error: " in last, err
    return last


def outcome(main, args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run a command's ``main(args)``: its exit status, standard output and standard error."""
    try:
        main(args)
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def run_stage(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None):
    """Run ``python -m stages.<module>`` as DVC would; return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping, like ``dvc exp run -S a.b.c=value``."""
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
