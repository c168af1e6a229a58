"""The result tables of the README and the docs are the committed metrics, never typed by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dllabs.labs.registry import LABS
from dllabs.tooling import result_tables
from tests.helpers.repo import REPO

# What the check reads: the pages that hold blocks, and what the blocks are written from.
SOURCES = ("README.md", "docs", "dvc.yaml", "metrics", "reports", "benchmarks/results")


def copy_sources(dest: Path) -> Path:
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name)
        else:
            shutil.copy(REPO / name, dest / name)
    return dest


def block(spec: str, body: str = "stale\n") -> str:
    return f"{result_tables.opener(spec)}\n{body}{result_tables.END}\n"


def test_the_committed_tables_match_the_committed_metrics(tmp_path: Path, capsys) -> None:
    """Fails after a `dvc repro` whose metrics were committed without `python -m
    dllabs.tooling.result_tables`.

    The committed files, not the workspace's: a `dvc repro` before the tests (the README's own
    order) rewrites the metrics' training times, and the pages follow at the next commit.
    """
    committed = subprocess.run(
        ["git", "ls-tree", "--name-only", "HEAD", *SOURCES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    archive = subprocess.run(
        ["git", "archive", "HEAD", *committed], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    assert result_tables.main(["--check", "--root", str(tmp_path)]) == 0, capsys.readouterr().err


def test_the_readme_home_page_and_lab_pages_carry_generated_tables() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(result_tables.opener("headline")) == 1
    home = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert result_tables.opener("results") in home and result_tables.opener("runs") in home
    for lab in ("mlp", "cnn", "anomaly", "cbow", "transfer"):
        page = (REPO / "docs" / "labs" / f"{lab}.md").read_text(encoding="utf-8")
        assert result_tables.opener(f"results {lab}") in page, lab


def test_a_changed_metric_makes_every_page_showing_it_stale_until_rewritten(
    tmp_path: Path, capsys
) -> None:
    root = copy_sources(tmp_path)
    assert result_tables.main(["--root", str(root)]) == 0  # in step with the workspace's metrics
    capsys.readouterr()
    mlp = root / "metrics" / "mlp.json"
    metrics = json.loads(mlp.read_text())
    metrics["test"]["accuracy"] = 0.123456
    mlp.write_text(json.dumps(metrics))

    assert result_tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "differ from metrics/" in err
    for page in ("README.md", "docs/index.md", "docs/labs/mlp.md"):
        assert page in err
    assert "docs/labs/cnn.md" not in err  # no MLP row there
    assert result_tables.main(["--root", str(root)]) == 0
    row = "| 1. Feedforward network | MLP | accuracy | 0.1235 |"
    for page in ("README.md", "docs/index.md", "docs/labs/mlp.md"):
        text = (root / page).read_text()
        assert row in text, page
        assert text.count(result_tables.END) == text.count("<!-- generated: ")
    assert result_tables.main(["--check", "--root", str(root)]) == 0


def test_the_headline_table_keeps_one_metric_per_model_with_interval_and_n() -> None:
    labs = result_tables.load_labs(REPO)
    rows = result_tables.render("headline", labs).strip().splitlines()[2:]
    full = result_tables.render("results", labs)
    assert rows and all(row in full for row in rows)
    metrics = {tuple(c.strip() for c in row.split("|")[1:4:2]) for row in rows}
    assert metrics <= {(lab.label, metric) for lab in LABS.values() for metric in lab.headline}
    assert {lab for lab, _ in metrics} == {
        "1. Feedforward network",
        "2. CNN",
        "3. Anomaly detection",
        "4. Word embeddings",
        "5. Transfer learning",
    }
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert " to " in cells[4] and int(cells[5]) > 0, row  # the interval and n


def test_a_lab_block_holds_that_lab_only(tmp_path: Path) -> None:
    labs = result_tables.load_labs(REPO)
    text = block("results cnn") + "\n" + block("runs cnn")
    result = result_tables.updated(text, labs, tmp_path)
    assert "| 2. CNN | CNN | accuracy |" in result and "| cnn | " in result
    assert "Feedforward" not in result and "| mlp |" not in result


def test_included_reports_are_copied_without_their_title(tmp_path: Path) -> None:
    include = "<!-- include: reports/sweep.md -->\nstale\n<!-- /include -->\n"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "sweep.md").write_text("# Sweep\n\n| size | scratch |\n|---|---|\n")
    result = result_tables.updated(f"Intro.\n\n{include}", {}, tmp_path)
    assert "<!-- include: reports/sweep.md -->\n\n| size | scratch |\n|---|---|\n\n<!--" in result
    assert "stale" not in result and "# Sweep" not in result


def test_markers_quoted_in_prose_are_not_blocks(tmp_path: Path) -> None:
    text = "Write `<!-- generated: results -->` on a line of its own.\n"
    assert result_tables.updated(text, {}, tmp_path) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (block("resutls"), "unknown generated block 'resutls'"),
        (block("results rnn"), "unknown generated block 'results rnn'"),
        (block("headline mlp"), "unknown generated block 'headline mlp'"),
        (result_tables.opener("results") + "\n| no end |\n", "whole blocks; each"),
        ("<!-- include: reports/x.md -->\nno end\n", "whole blocks; each"),
    ],
)
def test_a_bad_block_is_one_error_naming_the_file(
    tmp_path: Path, capsys, text: str, message: str
) -> None:
    root = copy_sources(tmp_path)
    page = root / "docs" / "labs" / "mlp.md"
    page.write_text(page.read_text() + "\n" + text)
    before = page.read_text()
    assert result_tables.main(["--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("result_tables: error: docs/labs/mlp.md: ") and message in err
    assert len(err.splitlines()) == 1 and page.read_text() == before
