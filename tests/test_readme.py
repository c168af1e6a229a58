"""The README's result tables are the committed metrics, never typed by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from dllabs import readme
from tests.conftest import REPO


def test_readme_results_match_the_committed_metrics(tmp_path: Path, capsys) -> None:
    """Fails after a `dvc repro` whose metrics were committed without `python -m dllabs.readme`.

    The committed files, not the workspace's: a `dvc repro` before the tests (the README's own
    order) rewrites the metrics' training times, and the README follows at the next commit.
    """
    archive = subprocess.run(
        ["git", "archive", "HEAD", "README.md", "dvc.yaml", "metrics", "reports"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    assert readme.main(["--check", "--root", str(tmp_path)]) == 0, capsys.readouterr().err


def test_a_changed_metric_makes_the_readme_stale_until_rewritten(tmp_path: Path, capsys) -> None:
    for name in ("README.md", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for folder in ("metrics", "reports"):  # the results block, the included reports
        shutil.copytree(REPO / folder, tmp_path / folder)
    mlp = tmp_path / "metrics" / "mlp.json"
    metrics = json.loads(mlp.read_text())
    metrics["test"]["accuracy"] = 0.123456
    mlp.write_text(json.dumps(metrics))

    assert readme.main(["--check", "--root", str(tmp_path)]) == 1
    assert "differ from metrics/" in capsys.readouterr().err
    assert readme.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| 1. Feedforward network | MLP | accuracy | 0.1235 |" in text
    assert readme.main(["--check", "--root", str(tmp_path)]) == 0
    assert text.count(readme.START) == text.count(readme.END) == 1


def test_included_reports_are_copied_without_their_title(tmp_path: Path) -> None:
    readme_text = (REPO / "README.md").read_text()
    block = readme_text[readme_text.index(readme.START) : readme_text.index(readme.END)]
    body = f"{block}{readme.END}\n\n<!-- include: reports/sweep.md -->\nstale\n<!-- /include -->\n"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "sweep.md").write_text("# Sweep\n\n| size | scratch |\n|---|---|\n")
    result = readme.updated(body, block + readme.END, tmp_path)
    assert "<!-- include: reports/sweep.md -->\n\n| size | scratch |\n|---|---|\n\n<!--" in result
    assert "stale" not in result and "# Sweep" not in result
