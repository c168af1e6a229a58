"""What the benchmarks that run DVC share: a clone of this repository's HEAD with a copy of its
DVC cache of its own, and commands run with this venv's ``bin`` first on ``PATH`` (DVC's queue
workers and a trial's stages call ``dvc`` and ``python`` from there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(args: list[str], cwd: Path, timeout: float = 7200) -> str:
    """Run a command; its stdout, or exit with the end of its output on failure."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {(done.stderr + done.stdout)[-3000:]}")
    return done.stdout


def workspace(folder: Path) -> Path:
    """A clone of HEAD in ``folder/repo``, its committed outputs checked out from a copy of the
    cache in ``folder/cache``: only the stages a benchmark changes run, and nothing it runs finds
    another measurement's results in DVC's run cache."""
    folder.mkdir(parents=True, exist_ok=True)
    repo = folder / "repo"
    sh(["git", "clone", "-q", str(ROOT), str(repo)], folder)
    shutil.copytree(ROOT / ".dvc" / "cache", folder / "cache")
    sh([str(BIN / "dvc"), "cache", "dir", "--local", str(folder / "cache")], repo)
    sh([str(BIN / "dvc"), "checkout", "-q"], repo)
    return repo
