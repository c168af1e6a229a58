"""One study on several machines: ``dl-labs tune --storage postgresql://...`` against a real
PostgreSQL server on 127.0.0.1 (tests/postgres.py: password logins, a study role and database),
each machine a clone of one bare git repository, pushing its trials to one S3 bucket on moto's
server (tests/s3_server.py), as tests/test_s3_remote.py sends experiments between machines.

- Two clones search one study at the same time (two processes); a third clone pulls every
  experiment and sees each trial with its params and validation score, then continues the study.
- What "trials are not repeated" can mean. Trial numbers come from the database (Optuna takes
  them under a row lock on the study), so no number, and no experiment name, is used twice; each
  trial's draws are seeded from ``base.seed`` and its number, so two workers, or a later run, never
  draw the same params under two numbers, as they did when each process seeded its sampler alike.
  TPE does not promise more: once it models the finished trials, two workers may propose nearby
  points (or, over choices and integers alone, the same one), and a worker does not wait for the
  other's running trial. What the tests assert is that no two trials hold the same params.
- Workers that start together against an empty database both create Optuna's tables; the one
  that loses that race tries again.
- A login the server refuses (a wrong password, a missing database) is one line naming the storage
  with its password starred, exit 1, and nothing written.

The searches use the session's reproduced baseline (quick params: one epoch per training) and the
anomaly lab, whose trials are the cheapest that train: the autoencoder and its threshold.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from dllabs.tuning.space import load_space
from dllabs.tuning.storage import make_pruner, open_storage, shown_url
from dllabs.tuning.study import make_sampler, open_study
from tests.helpers.repo import REPO, sh
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (a fixture)
from tests.test_remote import Storage, clone, dvc, experiments, s3_storage, share

TUNE = [sys.executable, "-m", "dllabs", "tune"]
LAB = "anomaly"
METRICS = f"metrics/validation/{LAB}.json"
STUDY = "shared"
TRIALS = 2  # per worker
SEARCH = 1200  # seconds for a worker's search: two trials, each pushed (on 2 busy cores)
SEED = 42
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    with s3_storage(tmp_path_factory.mktemp("s3"), "dl-labs-studies") as storage:
        yield storage


@pytest.fixture(scope="module")
def team(reproduced_baseline: Path, s3: Storage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return share(reproduced_baseline, s3, tmp_path_factory.mktemp("team"))


def space_of(lab: str = LAB):
    return load_space(lab, REPO / "conf/tune", REPO / "params.yaml")


def lookup(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def tune_lines(out: str) -> set[int]:
    """The trial numbers a ``dl-labs tune`` run reports as run by itself."""
    return {int(n) for n in re.findall(r"^tune: trial (\d+) \(", out, re.MULTILINE)}


# --- the study's side: draws and tables, against the real server ---------------------------------


# Asked outside Study.optimize, a trial sends no heartbeat, and Optuna says so.
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_workers_and_later_runs_draw_new_params_and_each_trial_the_same_wherever(
    postgres_url: str,  # noqa: F811 (the fixture)
) -> None:
    """Two workers' samplers (as two machines build them, from one seed) ask at once, then a
    later run asks: three trials, three draws. A single worker asking three times in another
    study draws the same three, trial by trial: the draw depends on the seed and the number."""
    storage = open_storage(postgres_url)
    space = space_of()

    def worker(study: str) -> optuna.Study:
        return open_study(study, storage, make_sampler("tpe", SEED), make_pruner("none", 1), "")

    first, second = worker("draws"), worker("draws")
    trials = [first.ask(), second.ask()]
    drawn = {trial.number: space.suggest(trial) for trial in trials}
    for study, trial in zip((first, second), trials, strict=True):
        study.tell(trial, 0.5)
    later = worker("draws").ask()
    drawn[later.number] = space.suggest(later)
    assert sorted(drawn) == [0, 1, 2]
    assert len({repr(sorted(params.items())) for params in drawn.values()}) == 3, drawn

    alone = worker("draws-alone")
    again = {}
    for _ in range(3):
        trial = alone.ask()
        again[trial.number] = space.suggest(trial)
        alone.tell(trial, 0.5)
    assert again == drawn


RACER = """
import sys, time
from dllabs.tuning.command import _claim
from dllabs.tuning.storage import make_pruner, open_storage
from dllabs.tuning.study import make_sampler, open_study
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
study = open_study("race", open_storage(url), make_sampler("tpe", 42), make_pruner("none", 1), "")
_claim(study, {"lab": "anomaly", "objective": "f1"})
print(study.ask().number)
"""


@pytest.mark.slow
def test_workers_starting_together_on_an_empty_database_both_open_the_study() -> None:
    """Both create Optuna's tables at the same moment (PostgreSQL refuses the second's names);
    the second tries again and finds them. A server of its own: the database must be empty."""
    with postgres_server() as server:
        start = time.time() + 5  # both processes imported and waiting by then
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, server.url(), str(start)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        ends = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], ends
    assert sorted(int(out) for out, _ in ends) == [0, 1]


# --- two machines, one study; a third sees every trial -------------------------------------------


def trial_spans(study: optuna.Study, numbers: set[int]) -> tuple[float, float]:
    """When a worker's first trial started and its last one ended (seconds since the epoch)."""
    trials = [t for t in study.trials if t.number in numbers]
    return (
        min(t.datetime_start.timestamp() for t in trials),
        max(t.datetime_complete.timestamp() for t in trials),
    )


@pytest.mark.long
def test_two_machines_search_one_study_and_a_third_sees_every_trial(
    team: Path,
    postgres_url: str,  # noqa: F811 (the fixture)
) -> None:
    """Two clones run ``dl-labs tune anomaly --trials 2 --push origin`` against one PostgreSQL
    study at the same time; a third clone's ``dvc exp pull origin`` brings every trial's
    experiment, whose params and validation F1 are the study's; the third continues the study,
    and a first worker's trial applied there finds its outputs (they came through the bucket).

    The workers leave the test split unread (``--no-test``): each would evaluate the study's best
    trial when its own search ends, and two ending together would both do it (the study records
    the score, but nothing stops a second evaluation begun before the first recorded it). The
    test split is read once, by the run that continues the study in the third clone."""
    workers = [clone(team, f"worker-{i}") for i in (1, 2)]
    for root in workers:
        # What a trial needs: the outputs upstream of the lab's threshold stage.
        dvc(root, "pull", "threshold_anomaly", "--with-deps")
    search = [
        *TUNE,
        LAB,
        "--storage",
        postgres_url,
        "--study",
        STUDY,
        "--trials",
        str(TRIALS),
        "--push",
        "origin",
        "--no-test",
    ]
    with ThreadPoolExecutor(len(workers)) as pool:
        runs = list(pool.map(lambda root: sh(search, root, check=False, timeout=SEARCH), workers))
    for root, run in zip(workers, runs, strict=True):
        assert run.returncode == 0, f"{root.name}:\n{run.stdout}\n{run.stderr}"
        assert "warning" not in run.stdout, run.stdout  # every push worked

    # The study holds both workers' trials, numbered apart, all complete, no params twice.
    study = optuna.load_study(study_name=STUDY, storage=open_storage(postgres_url))
    trials = study.trials
    assert [t.number for t in trials] == list(range(2 * TRIALS))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), trials
    # Each trial's training stage, in DVC's temporary copy, reported its epochs to the server.
    assert all(t.intermediate_values for t in trials)
    assert len({repr(sorted(t.params.items())) for t in trials}) == len(trials)
    ran = [tune_lines(run.stdout) for run in runs]
    assert [len(numbers) for numbers in ran] == [TRIALS, TRIALS] and not ran[0] & ran[1], ran
    assert ran[0] | ran[1] == {t.number for t in trials}
    # At the same time: each worker's trials began before the other's had all ended.
    (start_1, end_1), (start_2, end_2) = (trial_spans(study, numbers) for numbers in ran)
    assert start_1 < end_2 and start_2 < end_1
    for root, numbers in zip(workers, ran, strict=True):  # each worker kept its own trials only
        local = set(dvc(root, "exp", "list", "--name-only").split())
        assert local == {f"{STUDY}-{n}" for n in numbers}

    # A third clone pulls every experiment of main (git refs from origin, outputs from S3).
    third = clone(team, "third")
    dvc(third, "exp", "pull", "origin")
    shown = experiments(third)
    space = space_of()
    for trial in trials:
        name = trial.user_attrs["experiment"]
        assert name == f"{STUDY}-{trial.number}" and name in shown, (name, sorted(shown))
        data = shown[name]
        params = data["params"]["params.yaml"]["data"]
        for key, value in space.values_of(trial.params).items():
            assert lookup(params, key) == value, (name, key)
        assert data["metrics"][METRICS]["data"]["f1"] == trial.value, name

    # The third clone continues the study: the next number, new params, and the test split read
    # once, for the best trial.
    done = sh(
        [*TUNE, LAB, "--storage", postgres_url, "--study", STUDY, "--trials", "1"],
        third,
        timeout=SEARCH,
    )
    study = optuna.load_study(study_name=STUDY, storage=open_storage(postgres_url))
    assert [t.number for t in study.trials] == list(range(2 * TRIALS + 1))
    assert len({repr(sorted(t.params.items())) for t in study.trials}) == 2 * TRIALS + 1
    best = study.best_trial
    test = study.user_attrs[f"test:{best.number}"]
    local = set(dvc(third, "exp", "list", "--name-only").split())
    assert {f"{STUDY}-{2 * TRIALS}", f"{STUDY}-test-{best.number}"} <= local
    tested = experiments(third)[f"{STUDY}-test-{best.number}"]["metrics"]["metrics/anomaly.json"]
    assert test["value"] == tested["data"]["test"]["f1"]
    assert done.stdout.count("on the test split (read once)") == 1, done.stdout

    # A first worker's trial, applied in the third clone: its outputs came through the bucket.
    trial = study.trials[min(ran[0])]
    dvc(third, "exp", "apply", trial.user_attrs["experiment"])
    assert dvc(third, "status", "threshold_anomaly", "--with-deps").strip() == UP_TO_DATE
    assert json.loads((third / METRICS).read_text())["f1"] == trial.value


# --- a login the server refuses ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "cause"),
    [
        ("password", 'password authentication failed for user "tuner"'),
        ("database", 'database "nowhere" does not exist'),
    ],
)
def test_a_refused_login_is_one_line_and_writes_nothing(
    wrong: str,
    cause: str,
    postgres_url: str,  # noqa: F811 (the fixture)
    workdir,
) -> None:
    root = workdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "conf").mkdir()
    (root / "conf" / "tune").symlink_to(REPO / "conf" / "tune")
    sh(["git", "init", "-q"], root)
    password = re.search(r"//[^:]+:([^@]+)@", postgres_url).group(1)
    if wrong == "password":
        url = postgres_url.replace(f":{password}@", ":WRONG@")
    else:
        url = postgres_url.rsplit("/", 1)[0] + "/nowhere"
    before = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    start = time.monotonic()
    done = sh([*TUNE, "cnn", "--trials", "1", "--storage", url], root, check=False, timeout=120)
    assert done.returncode == 1 and time.monotonic() - start < 60, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and not done.stdout, done
    (line,) = lines
    assert line.startswith(
        f"tune: error: --storage {shown_url(url)}: cannot open the study storage: "
    ), line
    assert ":***@127.0.0.1:" in line and cause in line, line
    assert "WRONG" not in line and password not in line, line
    after = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    assert after == before  # no .tune/, no reports/
    assert not sh(["git", "for-each-ref", "refs/exps"], root).stdout  # no experiment
