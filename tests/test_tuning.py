"""``dl-labs tune``: search spaces checked as params are, trials as DVC experiments, pruning from
inside the training stage, the test split read once for the best trial, and every bad input or
fault in one line.

The searches run on a copy of the session's reproduced baseline (quick params: one epoch per
training), so they test the wiring, not the scores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from dllabs.errors import DataError, ParamsError
from dllabs.tooling.presets import compose_yaml
from dllabs.tuning import command as tune_command
from dllabs.tuning import experiments
from dllabs.tuning.experiments import trial_params
from dllabs.tuning.labs import LABS
from dllabs.tuning.pruning import TRIAL_ENV, TrialLink, TrialOrphaned, TrialPruned, trial_callbacks
from dllabs.tuning.report import write_report
from dllabs.tuning.space import load_space, override_value
from dllabs.tuning.study import check_study_name
from tests.helpers.repo import DVC, REPO, copy_of, sh
from tests.helpers.stages import outcome

TUNE = [sys.executable, "-m", "dllabs", "tune"]


# --- the search space, checked as params.yaml is ------------------------------------------------


@pytest.mark.parametrize("lab", sorted(LABS))
def test_the_shipped_spaces_are_valid_params(lab: str) -> None:
    space = load_space(lab, REPO / "conf/tune", REPO / "params.yaml")
    assert space.dimensions and all("." in d.key for d in space.dimensions)


def test_the_photos_space_is_valid_for_the_photos_preset(tmp_path: Path) -> None:
    """conf/tune/photos/cnn.yaml searches four-block CNNs: valid against the photos preset's
    params (as `make params PRESET=photos` writes them), refused against the digits defaults."""
    photos = tmp_path / "params.yaml"
    preset = compose_yaml(["dataset=photos", f"data.images_dir={tmp_path}"])
    photos.write_text(preset, encoding="utf-8")
    space = load_space("cnn", REPO / "conf/tune/photos", photos)
    assert {d.key for d in space.dimensions} >= {
        "cnn.input_size",
        "cnn.learning_rate",
        "cnn.filters",
        "cnn.dropout",
    }
    with pytest.raises(ParamsError, match=r"kernel_sizes has 3 entries but cnn\.filters has 4"):
        load_space("cnn", REPO / "conf/tune/photos", REPO / "params.yaml")


def test_trials_start_from_conf_composed_with_the_fixed_overrides(workdir) -> None:
    """With Hydra composition on, a trial's params are conf/ composed with -S, as dvc exp run
    composes them, whatever params.yaml holds: the space is checked against that, and a
    params.yaml that is not it is pointed out (its own edits would reach no trial)."""
    root = workdir()
    shutil.copytree(REPO / "conf", root / "conf")
    photos = ["dataset=photos", f"data.images_dir={root}"]
    start, note = trial_params(photos)
    assert start["data"]["preset"] == "photos" and len(start["cnn"]["filters"]) == 4
    assert "params.yaml is not conf/ composed with -S dataset=photos" in note
    load_space("cnn", REPO / "conf/tune/photos", start)  # valid for the photos preset
    (root / "params.yaml").write_text(compose_yaml(photos), encoding="utf-8")
    assert trial_params(photos) == (start, None)
    with pytest.raises(ParamsError, match="cannot compose dataset=nowhere"):
        trial_params(["dataset=nowhere"])


def space_file(folder: Path, body: str, lab: str = "cnn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lab}.yaml").write_text(body, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "params:\n  cnn.lerning_rate: {float: [0.001, 0.01]}\n",
            "unknown key cnn.lerning_rate; did you mean cnn.learning_rate?",
        ),
        ("params:\n  cnnn.dropout: {float: [0.0, 0.5]}\n", "unknown key cnnn; did you mean cnn?"),
        (
            "params:\n  cnn.dropout: {float: [0.0, 1.5]}\n",
            "(cnn.dropout = 1.5): cnn.dropout = 1.5: input should be less than 1",
        ),
        (
            "params:\n  cnn.optimizer: {choices: [adam, adamw]}\n",
            "cnn.optimizer = 'adamw' is not allowed",
        ),
        ("params:\n  cnn.dropout: {float: [0.5, 0.1]}\n", "cnn.dropout: low 0.5 > high 0.1"),
        ("params: {}\n", "params is empty"),
        ("params:\n  cnn.dropout: {uniform: [0, 1]}\n", "unknown setting uniform"),
        (
            "params:\n  cnn.learning_rate: {float: [0.0, 0.1], log: true}\n",
            "a log scale needs low > 0",
        ),
        ("params:\n  cnn.batch_size: {int: [16, 64.5]}\n", "int must be [low, high]"),
        ("params:\n  cnn.batch_size: {choices: [16, 16]}\n", "choices repeat a value"),
        (
            "objective: loss\nparams:\n  cnn.dropout: {float: [0.0, 0.5]}\n",
            "objective = 'loss'; this lab's validation metrics: accuracy",
        ),
        (
            "params:\n  cnn.dropout: &d {float: [0.0, 0.5]}\n  cnn.learning_rate: *d\n",
            "anchor &d; params files may not hold anchors or aliases",
        ),
    ],
)
def test_a_bad_space_is_one_line_naming_the_file(body: str, message: str, tmp_path) -> None:
    folder = space_file(tmp_path / "tune", body)
    with pytest.raises(ParamsError) as caught:
        space = load_space("cnn", folder, REPO / "params.yaml")
        tune_command.objective_key(LABS["cnn"], space.objective, str(space.source))
    assert "cnn.yaml" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_a_grid_needs_steps_or_choices(tmp_path: Path) -> None:
    folder = space_file(
        tmp_path / "tune",
        "params:\n  cnn.dropout: {float: [0.0, 0.5]}\n"
        "  cnn.batch_size: {int: [32, 128], step: 32}\n",
    )
    space = load_space("cnn", folder, REPO / "params.yaml")
    assert space.dimensions[1].grid() == [32, 64, 96, 128]
    with pytest.raises(ParamsError, match=r"cnn\.dropout: a grid needs a step"):
        space.grid()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.001, "0.001"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        ([32, 64], "[32,64]"),
        ("it's", "'it\\'s'"),
        ([], "[]"),
    ],
)
def test_override_values_are_written_in_hydras_grammar(value, text: str) -> None:
    assert override_value(value) == text


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "a..b", "x.lock"])
def test_a_study_name_that_cannot_name_an_experiment_is_refused(name: str) -> None:
    with pytest.raises(ParamsError, match="--study"):
        check_study_name(name)


# --- the command line: bad input is one line, exit 1, nothing written ---------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cbow", "--trials", "1"], "cbow has no validation score to tune on"),
        (["cnn"], "give a budget: --trials N and/or --timeout SECONDS"),
        (["cnn", "--trials", "0"], "--trials 0: expected 1 or more"),
        (["cnn", "--trials", "1", "--workers", "0"], "--workers 0: expected 1 or more"),
        (["cnn", "--trials", "1", "--timeout", "-5"], "--timeout -5.0: expected a positive"),
        (["cnn", "--trials", "1", "--storage", "redis://127.0.0.1/0"], "unknown scheme 'redis'"),
        (["cnn", "--trials", "1", "--study", "no/slash"], "--study 'no/slash'"),
        (["cnn", "--trials", "1", "-S", "dataset"], "-S dataset: expected KEY=VALUE"),
        (
            ["cnn", "--trials", "1", "-S", "cnn.dropout=0.1"],
            "-S cnn.dropout: also searched by conf/tune/cnn.yaml",
        ),
        (
            ["cnn", "--trials", "1", "-S", "cnn.dropuot=0.1"],
            "unknown key cnn.dropuot; did you mean cnn.dropout?",
        ),
    ],
)
def test_bad_input_is_one_line(argv, message: str, workdir, capsys) -> None:
    root = workdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "conf").mkdir()
    (root / "conf" / "tune").symlink_to(REPO / "conf" / "tune")
    status, _, err = outcome(tune_command.main, argv, capsys)
    assert status == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error: ") and message in lines[0], err
    assert not (root / ".tune").exists() and not (root / "reports").exists()


def test_the_report_ranks_importances_once_two_trials_have_completed(workdir, recwarn) -> None:
    """One complete trial: no importances (Optuna would rank every param equal, with a warning);
    six: Optuna's PED-ANOVA table, most important first, and both figures. The fixed -S
    overrides are named; nothing warns on the command's output."""
    workdir()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    settings = {
        "lab": "cnn",
        "objective": "accuracy",
        "metrics": "metrics/validation/cnn.json",
        "sampler": "random",
        "pruner": "none",
        "seed": 0,
        "space": "conf/tune/cnn.yaml",
        "set": ["dataset=photos"],
    }

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("experiment", f"s-{trial.number}")
        rate = trial.suggest_float("cnn.learning_rate", 1e-4, 1e-1, log=True)
        trial.suggest_float("cnn.dropout", 0.0, 0.5)
        return -abs(math.log10(rate) + 2.5)  # the learning rate alone decides

    study.optimize(objective, n_trials=1)
    report = write_report(study, settings, None).read_text()
    assert "Not computed: they need two complete trials at least." in report
    assert "every trial with `-S dataset=photos`" in report
    study.optimize(objective, n_trials=5)
    report = write_report(study, settings, None).read_text()
    table = report.split("| param | importance |")[1].split("\n\n")[0]
    assert table.index("cnn.learning_rate") < table.index("cnn.dropout")
    for figure in ("history.png", "slice.png"):
        assert Path(f"reports/tune_{study.study_name}/{figure}").read_bytes()[:4] == b"\x89PNG"
    assert not [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)]


def test_the_slice_figure_slants_only_the_labels_of_categorical_params() -> None:
    """Matplotlib writes negative ticks with a minus sign and leaves numeric ones blank until
    drawn: those stay level; a choice among filter lists is slanted so neighbours do not overlap."""
    from dllabs.tuning.report import _is_number

    assert all(_is_number(text) for text in ("0.1", "\N{MINUS SIGN}0.5", "", "1e-4"))
    assert not any(_is_number(text) for text in ("[16,32,64,128]", "adam"))


def test_the_slice_figure_of_a_study_slants_its_categorical_panel(workdir, monkeypatch) -> None:
    """The figure as written: the filters panel's labels slanted, the dropout panel's level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dllabs.tuning.report import figures

    workdir()
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep each figure to look at
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        filters = trial.suggest_categorical("cnn.filters", ["[16,32,64,128]", "[32,64,128,256]"])
        return trial.suggest_float("cnn.dropout", 0.0, 0.5) + len(filters) / 100

    study.optimize(objective, n_trials=6)
    figures(study, study.trials, "accuracy")
    rotation = {
        axes.get_xlabel(): {label.get_rotation() for label in axes.get_xticklabels()}
        for figure in drawn
        for axes in figure.axes
        if axes.get_xlabel().startswith("cnn.")
    }
    assert rotation == {"cnn.filters": {30.0}, "cnn.dropout": {0.0}}, rotation


def test_an_unreachable_database_is_one_line_without_its_password(workdir, capsys) -> None:
    """A closed port on 127.0.0.1: the driver's refusal, quickly, the password starred."""
    root = workdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "conf").mkdir()
    (root / "conf" / "tune").symlink_to(REPO / "conf" / "tune")
    url = f"postgresql://tuner:hunter2@127.0.0.1:{free_port()}/studies"
    start = time.monotonic()
    status, _, err = outcome(tune_command.main, ["cnn", "--trials", "1", "--storage", url], capsys)
    assert status == 1 and time.monotonic() - start < 30
    line = err.strip()
    assert "cannot open the study storage" in line and "hunter2" not in line, line
    assert "postgresql://tuner:***@127.0.0.1" in line


# --- the training stage's side: report each epoch, stop when pruned -----------------------------


def study_with_a_perfect_trial(url: str, name: str) -> optuna.Study:
    """A study whose one finished trial had validation loss 0 at every epoch: any real run is
    behind it, so the median pruner prunes the next trial at its first reported epoch."""
    study = optuna.create_study(
        study_name=name,
        storage=url,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            value=1.0,
            params={},
            distributions={},
            intermediate_values={step: 0.0 for step in range(20)},
        )
    )
    return study


def test_a_trial_reports_each_epoch_and_stops_when_the_pruner_says(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = study_with_a_perfect_trial(url, "s")
    trial = study.ask()
    link = TrialLink(url, "s", trial._trial_id, os.getpid(), "median", 1, 0, 20)
    monkeypatch.setenv(TRIAL_ENV, link.to_env())
    (reporter,) = trial_callbacks()
    with pytest.raises(TrialPruned, match="pruned by the study after epoch 1"):
        reporter.on_epoch_end(0, {"val_loss": 0.7, "loss": 0.6})
    stored = study._storage.get_trial(trial._trial_id)
    assert stored.intermediate_values == {0: -0.7}  # maximised: the loss negated
    assert stored.user_attrs["pruned_at_epoch"] == 1


def test_a_trial_whose_tune_process_is_gone_stops(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    trial = study.ask()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setenv(TRIAL_ENV, TrialLink(url, "s", trial._trial_id, gone.pid).to_env())
    (reporter,) = trial_callbacks()
    with pytest.raises(TrialOrphaned, match=f"the dl-labs tune process \\({gone.pid}\\)"):
        reporter.on_epoch_end(0, {"val_loss": 0.7})


def test_outside_a_trial_training_reports_nothing(monkeypatch) -> None:
    monkeypatch.delenv(TRIAL_ENV, raising=False)
    assert trial_callbacks() == []
    monkeypatch.setenv(TRIAL_ENV, "not json")
    with pytest.raises(Exception, match=f"{TRIAL_ENV}: not a trial link"):
        trial_callbacks()


# --- searches on a copy of the reproduced pipeline ------------------------------------------------


@pytest.fixture
def repo(reproduced_baseline: Path, tmp_path: Path) -> Path:
    return copy_of(reproduced_baseline, tmp_path / "repo")


def study_of(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / '.tune/studies.db'}")


def trials_so_far(root: Path, name: str, state: optuna.trial.TrialState | None = None) -> list:
    """The trials of a study that a search started in the background is creating: none while
    its storage's file, tables or study do not exist yet.

    Optuna's storage creates the tables and stamps their schema version when it opens a new
    database, so opening one while the search is still creating it races the search (a
    duplicate version row). A read-only look for the study comes first: once the study exists,
    its database is complete."""
    database = root / ".tune/studies.db"
    if not database.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # the tables not created yet, or the file still empty
        return []
    if not found:
        return []
    trials = study_of(root, name).trials
    return [t for t in trials if state is None or t.state == state]


def experiment_names(root: Path) -> set[str]:
    return set(sh([*DVC, "exp", "list", "--name-only"], root).stdout.split())


def validation(root: Path, lab: str = "cnn") -> dict:
    return json.loads((root / f"metrics/validation/{lab}.json").read_text())


@pytest.mark.long
def test_a_search_keeps_every_trial_as_an_experiment_and_reads_the_test_split_once(repo) -> None:
    """Three trials, two at a time: each an experiment with its params and validation score;
    the best trial alone evaluated on the test split; the report and its figures; the workspace
    untouched; then --apply-best and `dvc repro` reproduce the best trial's score exactly."""
    committed = {p: p.read_bytes() for p in (repo / "params.yaml", repo / "dvc.lock")}
    done = sh([*TUNE, "cnn", "--trials", "3", "--workers", "2"], repo, timeout=900)
    study = study_of(repo, "cnn")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3, done.stdout + done.stderr
    assert study.metric_names == ["validation accuracy"]  # optuna-dashboard's axis label
    best = study.best_trial
    assert experiment_names(repo) == {"cnn-0", "cnn-1", "cnn-2", f"cnn-test-{best.number}"}
    assert {p: p.read_bytes() for p in committed} == committed  # the workspace is untouched
    shown = json.loads(sh([*DVC, "exp", "show", "--json"], repo).stdout)
    rows = {
        rev["name"]: rev["data"]
        for b in shown
        for e in b.get("experiments") or []
        for rev in e["revs"]
        if rev.get("name")
    }
    for trial in study.trials:
        data = rows[f"cnn-{trial.number}"]
        scores = data["metrics"]["metrics/validation/cnn.json"]["data"]
        assert scores["accuracy"] == trial.value
        params = data["params"]["params.yaml"]["data"]["cnn"]
        assert params["learning_rate"] == trial.params["cnn.learning_rate"]
    test = study.user_attrs[f"test:{best.number}"]
    tested = rows[f"cnn-test-{best.number}"]["metrics"]["metrics/cnn.json"]["data"]["test"]
    assert test["value"] == tested["accuracy"] and test["n"] == tested["n"]
    report = (repo / "reports/tune_cnn.md").read_text()
    assert "The test split is read once, after the search, for the best trial alone." in report
    assert f"## Best trial: {best.number}" in report and f"**{test['value']:.4f}**" in report
    for figure in ("history.png", "slice.png"):
        assert (repo / "reports/tune_cnn" / figure).read_bytes()[:4] == b"\x89PNG"
    assert f"trial {best.number} on the test split (read once)" in done.stdout

    # Running again continues the study: no trial repeated, the test not run again.
    sh([*TUNE, "cnn", "--trials", "1"], repo, timeout=600)
    study = study_of(repo, "cnn")
    assert len(study.trials) == 4 and len({t.number for t in study.trials}) == 4

    sh([*TUNE, "cnn", "--apply-best"], repo, timeout=600)
    best = study_of(repo, "cnn").best_trial
    assert validation(repo)["accuracy"] == best.value
    applied = yaml.safe_load((repo / "params.yaml").read_text())["cnn"]
    assert applied["learning_rate"] == best.params["cnn.learning_rate"]
    sh([*DVC, "repro", "-f", "train_cnn"], repo, timeout=600)
    assert validation(repo)["accuracy"] == best.value  # the same machine: exactly


@pytest.mark.slow
def test_a_pruned_trial_is_recorded_and_leaves_no_experiment(repo) -> None:
    """The study's one finished trial had validation loss 0 at every epoch: the next trial's
    stage reports a worse loss after its first epoch and is pruned there."""
    (repo / ".tune").mkdir()
    study_with_a_perfect_trial(f"sqlite:///{repo / '.tune/studies.db'}", "p")
    done = sh(
        [
            *TUNE,
            "cnn",
            "--study",
            "p",
            "--trials",
            "1",
            "--startup-trials",
            "1",
            "--warmup-epochs",
            "0",
        ],
        repo,
        timeout=600,
        check=False,
    )
    trial = study_of(repo, "p").trials[1]
    assert trial.state == optuna.trial.TrialState.PRUNED, done.stdout + done.stderr
    assert trial.user_attrs["pruned_at_epoch"] == 1 and trial.intermediate_values
    assert "trial 1 (" in done.stdout and "pruned after epoch 1" in done.stdout
    assert "p-1" not in experiment_names(repo)
    assert not sh(["git", "status", "--porcelain", "--", ":!reports", ":!.tune"], repo).stdout


@pytest.mark.slow
def test_every_trial_gets_the_fixed_overrides_and_the_study_keeps_them(repo) -> None:
    """-S cnn.epochs=2 reaches the trial's experiment (two epochs trained where the baseline
    trains one) and the report; continuing the study without it is refused in one line."""
    done = sh(
        [
            *TUNE,
            "cnn",
            "--study",
            "f",
            "--trials",
            "1",
            "--pruner",
            "none",
            "--no-test",
            "-S",
            "cnn.epochs=2",
        ],
        repo,
        timeout=600,
    )
    assert "note:" not in done.stderr  # params.yaml is the composition of conf/
    (trial,) = study_of(repo, "f").trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, done.stdout + done.stderr
    shown = json.loads(sh([*DVC, "exp", "show", "--json"], repo).stdout)
    rows = {
        rev["name"]: rev["data"]
        for b in shown
        for e in b.get("experiments") or []
        for rev in e["revs"]
        if rev.get("name")
    }
    assert rows["f-0"]["params"]["params.yaml"]["data"]["cnn"]["epochs"] == 2
    assert rows["f-0"]["metrics"]["metrics/validation/cnn.json"]["data"]["epochs_trained"] == 2
    assert "every trial with `-S cnn.epochs=2`" in (repo / "reports/tune_f.md").read_text()
    again = sh([*TUNE, "cnn", "--study", "f", "--trials", "1"], repo, check=False)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        "tune: error: study f searches with -S ['cnn.epochs=2'], not []; name a new study with "
        "--study"
    ]
    assert len(study_of(repo, "f").trials) == 1


def test_a_restored_trainings_epochs_are_read_from_its_loss_table_and_sized_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DVCLive folder's manifest names the loss table; its rows are the epochs' losses. A
    table over the bound (a pulled experiment's file) is one line, before it is read."""
    manifest, table = tmp_path / "folder.dir", tmp_path / "loss.tsv"
    manifest.write_text(json.dumps([{"md5": "t", "relpath": "plots/metrics/eval/loss.tsv"}]))
    table.write_text("step\tloss\n0\t0.75\n1\t0.5\n")
    monkeypatch.setattr(experiments, "_cached", lambda ref, path: manifest)
    monkeypatch.setattr(experiments, "_cache_path", lambda oid: table)
    assert experiments.epoch_losses("ref", "plots/cnn") == [0.75, 0.5]
    monkeypatch.setattr(experiments, "MAX_HISTORY_BYTES", 10)
    with pytest.raises(DataError, match=r"plots/cnn/plots/metrics/eval/loss\.tsv is over 10"):
        experiments.epoch_losses("ref", "plots/cnn")


@pytest.mark.slow
def test_a_trial_restored_from_the_run_cache_reports_its_training_epochs(repo) -> None:
    """A second study draws the first one's params for its trial 0 (the same seed and number):
    DVC restores the training from its run cache, so no epoch reaches the study from the stage;
    the epochs the training logged are reported instead, equal to those the first trial sent
    live (the same training on the same machine: exactly)."""
    for study in ("first", "second"):
        sh([*TUNE, "cnn", "--study", study, "--trials", "1", "--no-test"], repo, timeout=600)
    (trained,) = study_of(repo, "first").trials
    (restored,) = study_of(repo, "second").trials
    assert restored.params == trained.params and restored.value == trained.value
    assert trained.intermediate_values and "restored" not in trained.user_attrs
    assert restored.user_attrs["restored"] is True
    assert restored.intermediate_values == trained.intermediate_values


@pytest.mark.slow
def test_a_failing_trial_is_recorded_with_its_line_and_the_search_goes_on(repo) -> None:
    """A learning rate at which training diverges: each trial fails with the stage's one line,
    the study records it and runs the next; with none complete the command exits 1."""
    space_file(repo / "spaces", "params:\n  cnn.learning_rate: {choices: [10.0]}\n")
    done = sh(
        [*TUNE, "cnn", "--trials", "2", "--space", "spaces", "--study", "f"],
        repo,
        timeout=600,
        check=False,
    )
    trials = study_of(repo, "f").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "train_cnn: error: training diverged" in trials[0].user_attrs["error"]
    assert done.returncode == 1 and "no trial of study f has completed" in done.stderr
    assert done.stdout.count("failed: train_cnn: error: training diverged") == 2


@pytest.mark.long
def test_a_killed_search_leaves_its_trial_failed_and_the_next_run_retries_it(repo) -> None:
    """SIGKILL of dl-labs tune mid-trial: the trial's heartbeat stops, the next run marks it
    failed once the grace period has passed and runs its params again; the orphaned stage sees
    its tune process gone and stops; the workspace is as it was."""
    grace = ["--grace-period", "4"]
    started = subprocess.Popen(
        [*TUNE, "cnn", "--trials", "1", *grace],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(1)
        trials = trials_so_far(repo, "cnn")
        if trials and trials[0].state == optuna.trial.TrialState.RUNNING:
            break
    time.sleep(3)  # into the trial's run
    started.send_signal(signal.SIGKILL)
    started.wait()
    time.sleep(6)  # past the grace period
    sh([*TUNE, "cnn", "--trials", "1", *grace], repo, timeout=600)
    trials = study_of(repo, "cnn").trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials[1:] if t.params == trials[0].params]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert not sh(["git", "status", "--porcelain", "--", ":!reports", ":!.tune"], repo).stdout


def processes_naming(text: str) -> list[str]:
    """The command lines of this machine's processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # not a process, or one that ended meanwhile
            continue
        if text in line:
            found.append(line)
    return found


@pytest.mark.slow
def test_sigterm_stops_every_running_trial_with_several_workers(repo) -> None:
    """With --workers 2 the experiments are awaited in Optuna's worker threads, which no signal
    reaches: SIGTERM must still stop both experiments' process groups, record both trials as
    failed (stopped), exit 130 in bounded time and leave the workspace as it was."""
    started = subprocess.Popen(
        [*TUNE, "cnn", "--study", "t", "--trials", "4", "--workers", "2"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    running: list = []
    while time.monotonic() < deadline and len(running) < 2:
        time.sleep(0.5)
        running = trials_so_far(repo, "t", optuna.trial.TrialState.RUNNING)
    assert len(running) == 2, started.communicate(timeout=600)
    # A trial is RUNNING in the study a moment before its `dvc exp run` starts (its params are
    # drawn and written first); on a loaded machine that moment is seconds, so wait for both.
    while time.monotonic() < deadline and not all(
        processes_naming(f"--name t-{trial.number} ") for trial in running
    ):
        time.sleep(0.5)
    assert all(processes_naming(f"--name t-{t.number} ") for t in running), "experiments running"
    time.sleep(2)
    stopped_at = time.monotonic()
    started.send_signal(signal.SIGTERM)
    out, err = started.communicate(timeout=90)
    assert started.returncode == 130, (out, err)
    assert time.monotonic() - stopped_at < 60  # SIGINT, SIGTERM 20 s later, SIGKILL 10 s after that
    assert err.strip().splitlines() == ["tune: interrupted; its outputs were left as they were"]
    assert not processes_naming("--name t-")
    trials = study_of(repo, "t").trials
    assert len(trials) == 2, trials  # no trial begun after the signal
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.FAIL
        assert trial.user_attrs["error"] == "stopped (Ctrl-C or SIGTERM)"
        assert f"trial {trial.number} (" in out and "): stopped" in out
    assert not sh(["git", "status", "--porcelain", "--", ":!reports", ":!.tune"], repo).stdout
