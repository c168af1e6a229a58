"""optuna-dashboard on a study of ``dl-labs tune``: the server the tuning guide tells users to
start reads the study's SQLite file and serves its trials, as stored, over HTTP on 127.0.0.1.

The study is made with Optuna's API (no training): the project's storage, a lab's params as
``dl-labs tune`` names and stores them, complete trials, a pruned one with its per-epoch values
and a failed one with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from dllabs.tuning.space import override_value
from dllabs.tuning.storage import make_pruner, open_storage
from dllabs.tuning.study import make_sampler, open_study
from tests.loopback import free_port

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
# It starts in 2 to 4 s (it imports Optuna, SQLAlchemy and scikit-learn), loaded cores or not.
START_SECONDS = 10.0
FILTERS = [[16, 32, 64], [32, 64, 128], [64, 128, 256]]

# Four dimensions of conf/tune/cnn.yaml, as the study stores them: a list choice by its label.
DISTRIBUTIONS = {
    "cnn.learning_rate": FloatDistribution(3.0e-4, 1.0e-2, log=True),
    "cnn.filters": CategoricalDistribution([override_value(f) for f in FILTERS]),
    "cnn.dropout": FloatDistribution(0.0, 0.6),
    "cnn.batch_size": CategoricalDistribution([32, 64, 128]),
}
# number -> (state, value, params, intermediate values, user attrs). Each epoch reports its
# negated validation loss; a pruned trial's value is its last report, as Optuna's tell() sets it.
TRIALS: dict[
    int, tuple[TrialState, float | None, dict[str, Any], dict[int, float], dict[str, Any]]
] = {
    0: (
        TrialState.COMPLETE,
        0.9125,
        {
            "cnn.learning_rate": 0.002,
            "cnn.filters": "[32,64,128]",
            "cnn.dropout": 0.3,
            "cnn.batch_size": 64,
        },
        {0: -0.61, 1: -0.42, 2: -0.35, 3: -0.31, 4: -0.29},
        {"experiment": "cnn-0"},
    ),
    1: (
        TrialState.COMPLETE,
        0.8750,
        {
            "cnn.learning_rate": 0.0091,
            "cnn.filters": "[16,32,64]",
            "cnn.dropout": 0.55,
            "cnn.batch_size": 128,
        },
        {0: -0.74, 1: -0.55, 2: -0.47, 3: -0.44, 4: -0.41},
        {"experiment": "cnn-1"},
    ),
    2: (
        TrialState.COMPLETE,
        0.9375,
        {
            "cnn.learning_rate": 0.0011,
            "cnn.filters": "[64,128,256]",
            "cnn.dropout": 0.12,
            "cnn.batch_size": 32,
        },
        {0: -0.52, 1: -0.33, 2: -0.27, 3: -0.24, 4: -0.22},
        {"experiment": "cnn-2"},
    ),
    3: (
        TrialState.PRUNED,
        -0.66,
        {
            "cnn.learning_rate": 0.0004,
            "cnn.filters": "[16,32,64]",
            "cnn.dropout": 0.48,
            "cnn.batch_size": 128,
        },
        {0: -0.93, 1: -0.78, 2: -0.70, 3: -0.66},
        {"experiment": "cnn-3", "pruned_at_epoch": 4},
    ),
    4: (
        TrialState.FAIL,
        None,
        {
            "cnn.learning_rate": 0.0098,
            "cnn.filters": "[64,128,256]",
            "cnn.dropout": 0.02,
            "cnn.batch_size": 32,
        },
        {0: -2.31},
        {"experiment": "cnn-4", "error": "train_cnn: the loss diverged (nan)"},
    ),
}
SHOWN_STATE = {
    TrialState.COMPLETE: "Complete",
    TrialState.PRUNED: "Pruned",
    TrialState.FAIL: "Fail",
}


def make_study(url: str) -> None:
    """The study ``cnn`` in the storage at ``url``, as ``dl-labs tune cnn`` leaves it."""
    storage = open_storage(url)
    study = open_study("cnn", storage, make_sampler("tpe", 42), make_pruner("median", 5), url)
    study.set_user_attr(
        "settings",
        {"lab": "cnn", "objective": "accuracy", "metrics": "metrics/validation/cnn.json"},
    )
    for state, value, params, steps, attrs in TRIALS.values():
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values=steps,
            )
        )
    # The server, another process, then reads a file that no connection of this one holds.
    storage.engine.dispose()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200, url
        return json.load(answer)


def output(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def running_dashboard(storage_url: str, log: Path) -> Iterator[str]:
    """optuna-dashboard on ``storage_url``, on a free port of 127.0.0.1; its base URL. Fails with
    the server's output if it exits or stays silent for :data:`START_SECONDS`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        # A session of its own: the teardown stops it and anything it started, whatever happens.
        process = subprocess.Popen(
            [str(DASHBOARD), storage_url, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"optuna-dashboard exited with {process.returncode} before serving:"
                    f"\n{output(log)}"
                )
            try:
                get_json(f"{base}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"optuna-dashboard did not answer on {base} within "
                        f"{START_SECONDS:g} s:\n{output(log)}"
                    )
                time.sleep(0.1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):  # it exited, and poll() reaped it
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """optuna-dashboard serving a fresh study ``cnn`` from a SQLite file; its base URL."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_study(url)
    with running_dashboard(url, tmp_path / "dashboard.log") as base:
        yield base


def test_the_dashboard_serves_a_tune_studys_trials(dashboard: str) -> None:
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in studies] == [("cnn", ["maximize"])]
    (study_id,) = (s["study_id"] for s in studies)
    detail = get_json(f"{dashboard}/api/studies/{study_id}")

    assert detail["name"] == "cnn"
    settings = {a["key"]: json.loads(a["value"]) for a in detail["user_attrs"]}["settings"]
    assert settings["lab"] == "cnn" and settings["objective"] == "accuracy"
    assert [t["number"] for t in detail["trials"]] == list(TRIALS)
    for served in detail["trials"]:
        state, value, params, steps, attrs = TRIALS[served["number"]]
        assert served["state"] == SHOWN_STATE[state]
        assert served.get("values") == (None if value is None else [value])
        # Params come back as text; a list choice as the label dl-labs tune gave it.
        assert {p["name"]: p["param_external_value"] for p in served["params"]} == {
            name: str(v) for name, v in params.items()
        }
        assert {a["key"]: a["value"] for a in served["user_attrs"]} == {
            key: str(v) for key, v in attrs.items()
        }
        assert [(i["step"], i["value"]) for i in served["intermediate_values"]] == list(
            steps.items()
        )
    assert [t["number"] for t in detail["best_trials"]] == [2]
    assert detail["has_intermediate_values"] is True
    assert {p["name"] for p in detail["union_search_space"]} == set(DISTRIBUTIONS)
    assert {a["key"] for a in detail["union_user_attrs"]} == {
        "experiment",
        "pruned_at_epoch",
        "error",
    }

    # The importances the dashboard plots, from the complete trials.
    (importances,) = get_json(f"{dashboard}/api/studies/{study_id}/param_importances")[
        "param_importances"
    ]
    assert {p["name"] for p in importances} == set(DISTRIBUTIONS)
    assert abs(sum(p["importance"] for p in importances) - 1.0) < 1e-6

    # The page a browser opens: the React app, whose script is served too.
    with urllib.request.urlopen(f"{dashboard}/dashboard/studies/{study_id}", timeout=10) as page:
        assert page.headers.get_content_type() == "text/html"
        assert b'src="/static/bundle.js"' in page.read()
    with urllib.request.urlopen(f"{dashboard}/static/bundle.js", timeout=10) as script:
        assert script.status == 200 and len(script.read()) > 100_000
