"""``python -m dllabs.tooling.code_deps``: dvc.yaml's code deps derived from the imports.

Most tests build a two-stage project of their own in ``tmp_path``, so that an edit of this
repository's code does not change what they assert; one checks the committed ``dvc.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dllabs.tooling import code_deps
from dllabs.tooling.code_deps import MARKER, PROG, main
from tests.helpers.repo import REPO

DVC_YAML = f"""\
# A comment about the whole file.
stages:
  prepare:
    cmd: python -m stages.prepare --out data/prepared
    outs:
      - data/prepared
    deps:
      # the raw data, copied by hand
      - data/raw
      {MARKER}
      - stages/prepare.py
      - dllabs/data.py

  score:
    foreach: [a, b]
    do:
      cmd: python -m stages.score --lab ${{item}}
      deps:
        - data/prepared
        {MARKER}
        - stages/score.py
        - dllabs/data.py
        - dllabs/data/classes.txt
        - dllabs/scoring.py
        - dllabs/training.py
plots:
  - plots/a
"""

SOURCES = {
    "stages/__init__.py": '"""Stages: nothing runs at import."""\n',
    "stages/prepare.py": "from dllabs.data import load\n",
    "stages/score.py": (
        "import dllabs.scoring\n\n\ndef main():\n    from dllabs.training import fit\n"
    ),
    "dllabs/__init__.py": '"""The package."""\n',
    "dllabs/data.py": "import numpy\n\n\ndef load():\n    pass\n",
    "dllabs/scoring.py": "from dllabs import data\n",
    "dllabs/training.py": "FILES = resources.files('dllabs').joinpath('data/classes.txt')\n",
}


def project(root: Path, dvc_yaml: str = DVC_YAML) -> Path:
    for name, text in SOURCES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "dvc.yaml").write_text(dvc_yaml, encoding="utf-8")
    code_deps.source_closure.cache_clear()
    return root


def run(root: Path, *args: str) -> int:
    return main([*args, "--root", str(root)])


def test_a_project_whose_deps_follow_its_imports_passes_the_check(tmp_path: Path) -> None:
    assert run(project(tmp_path), "--check") == 0


def test_the_closure_follows_imports_in_functions_and_data_files_it_names(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert code_deps.code_deps("stages.score", root) == [
        "stages/score.py",
        "dllabs/data.py",
        "dllabs/data/classes.txt",
        "dllabs/scoring.py",
        "dllabs/training.py",
    ]


def test_an_init_that_runs_code_counts_and_one_that_only_documents_does_not(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    assert "stages/__init__.py" not in code_deps.source_closure("stages.prepare", root)
    (root / "stages/__init__.py").write_text("import dllabs.training\n", encoding="utf-8")
    code_deps.source_closure.cache_clear()
    assert {"stages/__init__.py", "dllabs/training.py"} <= code_deps.source_closure(
        "stages.prepare", root
    )


def test_a_new_import_makes_the_check_fail_naming_the_stage_and_the_command(
    tmp_path: Path, capsys
) -> None:
    root = project(tmp_path)
    (root / "stages/prepare.py").write_text("import dllabs.scoring\n", encoding="utf-8")
    assert run(root, "--check") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "the code deps of prepare differ" in err and f"run `{PROG} --write`" in err
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == DVC_YAML  # --check writes nothing


def test_write_rewrites_only_the_code_and_keeps_data_comments_and_layout(tmp_path: Path) -> None:
    stale = DVC_YAML.replace("      - dllabs/data.py\n\n", "      - dllabs/gone.py\n\n")
    root = project(tmp_path, stale)
    assert run(root, "--check") == 1
    assert run(root, "--write") == 0
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == DVC_YAML
    assert run(root, "--write") == 0  # nothing left to write
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == DVC_YAML


def test_a_list_without_the_marker_gets_it_with_the_code_after_the_data(tmp_path: Path) -> None:
    by_hand = DVC_YAML.replace(
        f"      - data/raw\n      {MARKER}\n      - stages/prepare.py\n",
        "      - stages/prepare.py\n      - data/raw\n",
    )
    root = project(tmp_path, by_hand)
    assert run(root, "--write") == 0
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == DVC_YAML


@pytest.mark.parametrize(
    ("dvc_yaml", "expected"),
    [
        ("stages: [\n", "dvc.yaml: while parsing a flow node"),
        (DVC_YAML.replace("python -m stages.prepare", "python prepare.py"), "one `stages.<name>`"),
        (DVC_YAML.replace("stages.prepare", "stages.nothere"), "stages.nothere is not a file"),
    ],
)
def test_a_bad_dvc_yaml_is_one_error_and_nothing_written(
    tmp_path: Path, capsys, dvc_yaml: str, expected: str
) -> None:
    root = project(tmp_path, dvc_yaml)
    assert run(root, "--write") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: error: ") and expected in err and err.count("\n") == 1
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml
    assert sorted(p.name for p in root.iterdir()) == ["dllabs", "dvc.yaml", "stages"]


def test_the_committed_dvc_yaml_lists_exactly_the_code_each_stage_runs(capsys) -> None:
    assert run(REPO, "--check") == 0, capsys.readouterr().err
