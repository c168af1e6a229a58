"""An S3 bucket as the team's DVC remote, on moto's S3 server on 127.0.0.1 (tests/s3_server.py).

tests/test_remote.py runs the sharing commands of docs/guides/sharing.md against such a bucket as
well as against a local folder. Here, with one bare git repository and one bucket:

- experiments from several machines: two clones each run a trial and `dvc exp push` it; a third
  `dvc exp pull`s both, `dvc exp show` lists them with their metrics, and `dvc plots diff`
  draws one beside the other;
- a bucket that does not exist, refused credentials and an endpoint that does not answer:
  `dvc push`, `dvc pull` and `dl-labs predict --rev` exit non-zero with an error line naming the
  cause, no traceback, and the workspace as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.helpers.repo import DVC, copy_of, sh
from tests.loopback import free_port
from tests.s3_server import refused_credentials
from tests.test_remote import (
    EXPERIMENT,
    QUICK,
    REMOTE,
    Storage,
    clone,
    dvc,
    experiments,
    files,
    git,
    s3_storage,
    share,
)

# Two cheap trials (only the anomaly threshold and the evaluations run): name -> k.
TRIALS = {"anomaly-k2": 2, "anomaly-k3": 3}
PREDICT = ["dl-labs", "predict", "cnn", "examples/digits", "--rev", "main"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    with s3_storage(tmp_path_factory.mktemp("s3"), "dl-labs-machines") as storage:
        yield storage


@pytest.fixture(scope="module")
def team(reproduced_baseline: Path, s3: Storage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return share(reproduced_baseline, s3, tmp_path_factory.mktemp("team"))


@pytest.mark.long
def test_experiments_from_two_machines_meet_in_a_third(team: Path) -> None:
    thresholds = {}
    for name, k in TRIALS.items():
        machine = clone(team, name)
        dvc(machine, "pull")
        dvc(machine, "exp", "run", "-n", name, "-S", f"anomaly.k={k}", timeout=EXPERIMENT)
        dvc(machine, "exp", "push", "origin", name)
        thresholds[name] = json.loads((machine / "metrics/anomaly.json").read_text())["threshold"]
    assert len(set(thresholds.values())) == len(TRIALS)

    third = clone(team, "third")
    for name in TRIALS:
        dvc(third, "exp", "pull", "origin", name)
    table = dvc(third, "exp", "show")
    shown = experiments(third)
    for name, k in TRIALS.items():
        assert name in table
        assert shown[name]["params"]["params.yaml"]["data"]["anomaly"]["k"] == k
        threshold = shown[name]["metrics"]["metrics/anomaly.json"]["data"]["threshold"]
        assert threshold == thresholds[name]

    # One trial's plots beside the other's, from the outputs `dvc exp pull` fetched.
    dvc(third, "plots", "diff", *TRIALS, "--out", "plots-diff")
    page = (third / "plots-diff/index.html").read_text()
    histogram = "plots_evaluate_anomaly_error_histogram.png"
    images = [(third / "plots-diff/static" / f"{name}_{histogram}").read_bytes() for name in TRIALS]
    assert all(f'"rev": "{name}"' in page for name in TRIALS)
    assert images[0] != images[1]  # each marks its own threshold


def breaks(kind: str) -> tuple[dict[str, str], str, str]:
    """How a clone's `.dvc/config.local` puts the bucket out of reach (no option: the server
    refuses the credentials), and what DVC and `dl-labs predict` then name as the cause."""
    if kind == "missing bucket":
        options = {"url": "s3://no-such-bucket/dl-labs"}
        return options, "The specified bucket does not exist", "The specified bucket does not exist"
    if kind == "closed port":
        options = {"endpointurl": f"http://127.0.0.1:{free_port()}"}
        cause = f'Could not connect to the endpoint URL: "{options["endpointurl"]}/'
        return options, cause, cause
    return {}, "Forbidden", "The AWS Access Key Id you provided does not exist in our records"


def fails(root: Path, command: list[str]) -> list[str]:
    """Run ``command`` expecting it to fail: non-zero, no traceback, the workspace untouched.
    Returns the lines it wrote to stderr."""
    before = files(root)
    result = sh(command, root, check=False, timeout=QUICK)
    shown = f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    assert result.returncode != 0, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert files(root) == before
    assert git(root, "status", "--porcelain") == ""
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["missing bucket", "refused credentials", "closed port"])
@pytest.mark.slow
def test_a_bucket_out_of_reach_fails_in_one_line(
    team: Path, s3: Storage, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore makes 5 attempts at each request, backing off between them; with one attempt these
    # fail within seconds. An endpoint that accepts and never answers is bounded by the remote's
    # timeouts instead (docs/guides/sharing.md, tests/test_hostile_downloads.py).
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    pusher = copy_of(team / "origin", tmp_path / "pusher")  # every output in its cache
    puller = clone(team, f"puller-{kind.replace(' ', '-')}")  # none
    options, cause, predict_cause = breaks(kind)
    for root in (pusher, puller):
        for option, value in options.items():
            dvc(root, "remote", "modify", "--local", REMOTE, option, value)
    url = options.get("url", s3.url)
    refusing = refused_credentials(s3.options["endpointurl"]) if not options else nullcontext()
    with refusing:
        for root, command in ((pusher, "push"), (puller, "pull")):
            errors = [line for line in fails(root, [*DVC, command]) if line.startswith("ERROR: ")]
            assert errors and cause in errors[0], errors
        (line,) = fails(puller, PREDICT)
    assert line.startswith(
        f"predict: error: cannot read main's models from remote '{REMOTE}' ({url}): {predict_cause}"
    ), line
