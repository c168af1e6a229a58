"""Stage outputs: all or nothing, no leftovers after a killed run, the usual permissions, and
one line on Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dllabs.errors import stage_errors
from dllabs.outputs import staged_outputs

KILLED_MID_STAGE = """
import os, signal, sys
from dllabs.outputs import staged_outputs
with staged_outputs() as out:
    plots = out.dir("plots/mlp")
    (plots / "metrics.json").write_text("{}")
    out.file("models/mlp.keras").write_bytes(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` or the kernel's OOM killer would
"""


def temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp*"))


def test_a_killed_run_leaves_temporaries_that_the_next_run_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_STAGE],
        cwd=tmp_path,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert killed.returncode == -signal.SIGKILL
    assert len(temporaries(tmp_path)) == 2  # SIGKILL skips every cleanup
    unrelated = tmp_path / "plots" / ".cnn.abc.tmp"  # another output's: not this stage's to remove
    unrelated.mkdir()

    monkeypatch.chdir(tmp_path)
    with staged_outputs() as out:
        (out.dir("plots/mlp") / "metrics.json").write_text('{"loss": 1}')
        out.file("models/mlp.keras").write_bytes(b"a whole model")
    assert temporaries(tmp_path) == ["plots/.cnn.abc.tmp"]
    assert (tmp_path / "models" / "mlp.keras").read_bytes() == b"a whole model"


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)]
)
def test_outputs_get_the_permissions_of_a_plain_write(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    """Not the private 0600/0700 of mkstemp/mkdtemp: a team shares the workspace and cache."""
    previous = os.umask(umask)
    try:
        with staged_outputs() as out:
            out.file(tmp_path / "metrics.json").write_text("{}")
            (out.dir(tmp_path / "plots") / "a.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "plots").stat().st_mode) == dir_mode


def test_ctrl_c_prints_one_line_exits_130_and_writes_nothing(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as caught, stage_errors("train_mlp"), staged_outputs() as out:
        out.file(tmp_path / "model.keras").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert caught.value.code == 130
    assert capsys.readouterr().err == "train_mlp: interrupted; its outputs were left as they were\n"
    assert list(tmp_path.iterdir()) == []


def test_asking_twice_for_one_output_gets_one_temporary(tmp_path: Path) -> None:
    """A stage may fill one output folder in two steps; both parts must survive the commit."""
    with staged_outputs() as out:
        (out.dir(tmp_path / "plots") / "transfer").mkdir()
        (out.dir(tmp_path / "plots") / "scratch").mkdir()
        assert out.file(tmp_path / "m.json") == out.file(tmp_path / "m.json")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["scratch", "transfer"]


def test_a_failed_stage_removes_the_folders_it_made_for_its_outputs(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "other.txt").write_text("someone else's")
    with pytest.raises(RuntimeError), staged_outputs() as out:
        out.file(tmp_path / "models" / "deep" / "m.keras").write_text("half")
        out.dir(tmp_path / "models" / "deep" / "er" / "plots")
        out.dir(tmp_path / "kept" / "plots")
        out.file(tmp_path / "shared" / "new" / "x.json")
        (tmp_path / "shared" / "new" / "stray.txt").write_text("not ours to delete")
        raise RuntimeError("training failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "shared"]
    assert list((tmp_path / "kept").iterdir()) == []
    assert (tmp_path / "shared" / "new" / "stray.txt").is_file()
