"""docs/guides/sharing.md: one pipeline shared through a git remote and a DVC remote.

Every test runs twice: with a local folder as the team's DVC remote, and with an S3 bucket on
moto's S3 server on 127.0.0.1 (tests/s3_server.py; GCS, Azure and SSH are the same commands with
another URL); a bare repository stands in for the git host. The origin is a copy of the session's
reproduced baseline, its branch named main, with the remote added, committed and pushed; each
test then works in fresh `git clone`s of the bare repository, as teammates would:

- a clone's `dl-labs predict --rev main` reads main's model from the remote before any pull;
- a clone that runs `dvc pull` has every output, byte for byte, and `dvc repro` runs nothing;
- `dvc plots diff main` in a clone without main's outputs reads them from the remote on demand
  (from a local folder DVC streams them without storing them in the cache, from a bucket it
  caches what it downloads; with no reachable remote it exits 0 and leaves main out), and
  `dvc fetch --all-branches --type plots`, which the GitHub workflow runs, stores exactly the
  plot outputs so that the comparison needs no remote;
- an experiment run in one clone and `dvc exp push`ed is `dvc exp pull`ed in another, listed
  there with its param and metrics, compared with main and applied; the first clone's
  `dvc plots diff main` draws main's plots beside the experiment's;
- with the run cache pushed, a third clone's `dvc exp run --pull` of the same params restores
  the threshold stage from it instead of running it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.repo import DVC, copy_of, sh
from tests.s3_server import create_bucket, s3_server

QUICK = 180  # seconds for a git or DVC command that runs no stage (a few on 2 busy cores)
EXPERIMENT = 900  # an experiment: the anomaly threshold, its evaluation and the summary
REMOTE = "storage"  # the docs' name for the DVC remote (docs/guides/sharing.md)
EXPERIMENT_NAME = "anomaly-k2"
# Everything the pipeline writes (DVC outputs, cached or not); a clone must hold it all, unchanged.
OUTPUT_FOLDERS = ("data", "models", "plots", "metrics", "reports")


def dvc(root: Path, *args: str, timeout: float = QUICK) -> str:
    return sh([*DVC, *args], root, timeout=timeout).stdout


def git(root: Path, *args: str) -> str:
    return sh(["git", *args], root, timeout=QUICK).stdout


def files(root: Path) -> dict[str, bytes]:
    """Each file under the pipeline's output folders -> its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for folder in OUTPUT_FOLDERS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def cached_files(root: Path) -> int:
    """How many objects the clone's DVC cache holds (none before a pull or fetch)."""
    return sum(1 for path in (root / ".dvc" / "cache" / "files").rglob("*") if path.is_file())


@dataclass
class Storage:
    """A DVC remote: its URL, the options committed with it, and the options that, set in a
    clone's `.dvc/config.local`, put it out of reach."""

    url: str
    unreachable: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)
    caches_reads: bool = False  # what DVC reads from it on demand lands in the cache


@contextmanager
def s3_storage(scratch: Path, bucket: str) -> Iterator[Storage]:
    """A bucket on moto's S3 server, reached through the remote's `endpointurl` as MinIO or
    another S3-compatible store would be (credentials from the environment)."""
    with s3_server(scratch) as endpoint:
        create_bucket(endpoint, bucket)
        yield Storage(
            f"s3://{bucket}/dl-labs",
            unreachable={"url": "s3://no-such-bucket/dl-labs"},
            options={"endpointurl": endpoint},
            caches_reads=True,
        )


@pytest.fixture(scope="module", params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storage]:
    scratch = tmp_path_factory.mktemp(f"storage-{request.param}")
    if request.param == "local":
        yield Storage(str(scratch / "dvc-store"), unreachable={"url": str(scratch / "nowhere")})
    else:
        with s3_storage(scratch, "dl-labs-team") as s3:
            yield s3


def share(baseline: Path, storage: Storage, root: Path) -> Path:
    """``root`` holding `origin` (the pushing teammate, a copy of ``baseline``) and `origin.git`
    (the git host), everything pushed, to git and to ``storage``."""
    origin = copy_of(baseline, root / "origin")
    git(origin, "branch", "-m", "main")
    dvc(origin, "remote", "add", "-d", REMOTE, storage.url)
    for option, value in storage.options.items():
        dvc(origin, "remote", "modify", REMOTE, option, value)
    git(origin, "add", ".dvc/config")
    git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "DVC remote")
    git(root, "init", "-q", "--bare", "--initial-branch=main", "origin.git")
    git(origin, "remote", "add", "origin", str(root / "origin.git"))
    git(origin, "push", "-q", "origin", "main")
    assert "files pushed" in dvc(origin, "push")
    return root


@pytest.fixture(scope="module")
def team(
    reproduced_baseline: Path, storage: Storage, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return share(reproduced_baseline, storage, tmp_path_factory.mktemp("team"))


def clone(team: Path, name: str) -> Path:
    """A teammate's `git clone` of the shared repository: git files only, no DVC outputs."""
    git(team, "clone", "-q", "origin.git", name)
    return team / name


@pytest.mark.slow
def test_a_clone_pulls_every_output_and_reproduces_nothing(team: Path) -> None:
    root = clone(team, "pulled")
    assert not (root / "models/mlp").exists() and cached_files(root) == 0
    # Before any pull, `predict --rev` reads main's CNN from the remote.
    predict = ["dl-labs", "predict", "cnn", "examples/digits", "--json"]
    from_remote = sh([*predict, "--rev", "main"], root, timeout=QUICK).stdout
    assert from_remote == sh(predict, team / "origin", timeout=QUICK).stdout
    assert not (root / "models/cnn").exists()
    dvc(root, "pull")
    assert files(root) == files(team / "origin")
    assert dvc(root, "status").strip() == "Data and pipelines are up to date."
    out = dvc(root, "repro")
    assert "Running stage" not in out
    stages = set(dvc(root, "stage", "list", "--name-only").split())
    assert set(re.findall(r"Stage '([\w@]+)' didn't change, skipping", out)) == stages
    assert out.strip().endswith("Data and pipelines are up to date.")


def drawn(root: Path) -> tuple[dict[str, set[str]], dict[str, list], set[str]]:
    """`dvc plots diff main --json`: each plot ID -> the revisions drawn in it, each vega plot's
    data points, and the revisions DVC could not load files of (it exits 0 all the same)."""
    shown = json.loads(dvc(root, "plots", "diff", "main", "--json"))
    data = shown.get("data", {})
    revisions = {
        plot: {rev for entry in entries for rev in entry["revisions"]}
        for plot, entries in data.items()
    }
    points = {
        plot: entry["content"]["data"]["values"]
        for plot, entries in data.items()
        for entry in entries
        if entry["type"] == "vega"
    }
    return revisions, points, {error["rev"] for error in shown.get("errors", [])}


def main_points(points: list[dict], key: str) -> set[tuple[str, str]]:
    return {(p["step"], p[key]) for p in points if p["rev"] == "main"}


def tsv_points(path: Path, key: str) -> set[tuple[str, str]]:
    with path.open(newline="") as rows:
        return {(row["step"], row[key]) for row in csv.DictReader(rows, delimiter="\t")}


def out_of_reach(root: Path, storage: Storage) -> None:
    for option, value in storage.unreachable.items():
        dvc(root, "remote", "modify", "--local", REMOTE, option, value)


@pytest.mark.slow
def test_plots_diff_reads_main_plots_from_the_remote_and_the_workflow_fetch_keeps_them(
    team: Path, storage: Storage
) -> None:
    root = clone(team, "plots")  # no `dvc pull`: neither the workspace's nor main's outputs
    git(root, "switch", "-q", "-c", "feature")  # as a pull request's branch
    loss = "Loss (training and validation, MLP)"
    origin_loss = tsv_points(team / "origin/plots/mlp/plots/metrics/eval/loss.tsv", "loss")

    # With the remote out of reach, main's plots cannot be drawn, and DVC still exits 0.
    out_of_reach(root, storage)
    revisions, _, failed = drawn(root)
    assert "main" in failed and not any("main" in revs for revs in revisions.values())

    # With the remote, every plot of main is drawn: read from the remote, and stored in the cache
    # only when DVC downloaded them (from a bucket, not from a folder).
    for option in storage.unreachable:
        dvc(root, "remote", "modify", "--local", "--unset", REMOTE, option)
    revisions, points, failed = drawn(root)
    assert not failed and all("main" in revs for revs in revisions.values()), revisions
    assert origin_loss <= main_points(points[loss], "loss")
    assert (cached_files(root) > 0) == storage.caches_reads

    # The workflow's fetch stores main's plot outputs (and only those), so the comparison no
    # longer needs the remote.
    dvc(root, "fetch", "--all-branches", "--type", "plots")
    assert 0 < cached_files(root) < cached_files(team / "origin")
    out_of_reach(root, storage)
    revisions, points, failed = drawn(root)
    assert not failed and all("main" in revs for revs in revisions.values()), revisions
    assert origin_loss <= main_points(points[loss], "loss")


def experiments(root: Path) -> dict[str, dict]:
    """`dvc exp show --json`: each experiment's name -> its params and metrics."""
    return {
        rev["name"]: rev["data"]
        for baseline in json.loads(dvc(root, "exp", "show", "--json"))
        for experiment in baseline.get("experiments") or []
        for rev in experiment["revs"]
    }


# Through a folder remote only: tests/test_s3_remote.py sends experiments through a bucket, from
# two machines to a third, and the other tests here run against both kinds of remote. Three
# clones, two experiments and the run cache make this a long scenario (make test-long); in
# make test, tests/test_predict.py runs an experiment and the tests here push and pull outputs.
@pytest.mark.long
@pytest.mark.parametrize("storage", ["local"], indirect=True)
def test_an_experiment_travels_from_one_clone_to_another(team: Path) -> None:
    first = clone(team, "first")
    dvc(first, "pull")
    out = dvc(first, "exp", "run", "-n", EXPERIMENT_NAME, "-S", "anomaly.k=2", timeout=EXPERIMENT)
    assert set(re.findall(r"Running stage '([\w@]+)'", out)) == {
        "threshold_anomaly",
        "evaluate_anomaly",
        "evaluate",
    }
    dvc(first, "exp", "push", "origin", EXPERIMENT_NAME)  # git refs to origin, outputs to storage
    dvc(first, "push", "--run-cache")  # the stages' run records, for the last clone below
    threshold = json.loads((first / "metrics/anomaly.json").read_text())["threshold"]

    # The experimenter compares the workspace (the experiment) with main: main's plots are
    # origin's, the experiment's error histogram (which marks the threshold) its own.
    dvc(first, "plots", "diff", "main", "--out", "plots-diff")
    page = (first / "plots-diff/index.html").read_text()
    assert '"rev": "main"' in page and '"rev": "workspace"' in page
    static = first / "plots-diff/static"  # each image plot once per revision
    for plot in ("anomaly/error_histogram.png", "mlp/misclassified.png", "cbow/pca.png"):
        drawn_as = "plots_evaluate_" + plot.replace("/", "_")
        main_image = (static / f"main_{drawn_as}").read_bytes()
        assert main_image == (team / "origin/plots/evaluate" / plot).read_bytes()
        workspace_image = (static / f"workspace_{drawn_as}").read_bytes()
        assert workspace_image == (first / "plots/evaluate" / plot).read_bytes()
        assert (main_image == workspace_image) == (plot != "anomaly/error_histogram.png")

    # A teammate pulls the experiment: its param, its metrics and its outputs.
    second = clone(team, "second")
    assert EXPERIMENT_NAME in dvc(second, "exp", "list", "origin")
    dvc(second, "exp", "pull", "origin", EXPERIMENT_NAME)
    assert dvc(second, "exp", "list", "--name-only").split() == [EXPERIMENT_NAME]
    assert EXPERIMENT_NAME in dvc(second, "exp", "show")
    data = experiments(second)[EXPERIMENT_NAME]
    assert data["params"]["params.yaml"]["data"]["anomaly"]["k"] == 2
    assert data["metrics"]["metrics/anomaly.json"]["data"]["threshold"] == threshold
    table = dvc(second, "metrics", "diff", "main", EXPERIMENT_NAME)
    assert re.search(r"metrics/anomaly\.json +threshold ", table), table
    diff = json.loads(dvc(second, "metrics", "diff", "main", EXPERIMENT_NAME, "--json"))
    assert diff["metrics/anomaly.json"]["threshold"]["new"] == threshold
    assert diff["metrics/anomaly.json"]["threshold"]["diff"] != 0
    dvc(second, "exp", "apply", EXPERIMENT_NAME)
    assert files(second) == files(first)
    assert dvc(second, "status").strip() == "Data and pipelines are up to date."

    # Another teammate runs the same params with --pull: the threshold stage comes from the run
    # cache (its outputs from the remote); the evaluation, whose metrics file is kept in git
    # rather than in the cache, runs again.
    third = clone(team, "third")
    out = dvc(third, "exp", "run", "--pull", "-S", "anomaly.k=2", timeout=EXPERIMENT)
    assert "Stage 'threshold_anomaly' is cached - skipping run, checking out outputs" in out
    assert set(re.findall(r"Running stage '([\w@]+)'", out)) == {"evaluate_anomaly", "evaluate"}
    anomaly = json.loads((third / "metrics/anomaly.json").read_text())
    assert anomaly["threshold"] == threshold
