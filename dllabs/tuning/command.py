"""``dl-labs tune LAB``: an Optuna study on one lab, every trial a DVC experiment.

Each trial draws params from the lab's search space (``conf/tune/<lab>.yaml``), runs the lab's
training stage as ``dvc exp run --temp --name <study>-<trial> -S ...``, and is scored by the
validation metric that stage writes (``metrics/validation/<lab>.json``). The training stage
reports its validation loss after every epoch and stops when the pruner says so. After the search,
the best trial alone is evaluated on the test split, once (the experiment
``<study>-test-<trial>``), and ``reports/tune_<study>.md`` is written. ``--apply-best`` brings that
experiment into the workspace (``dvc exp apply``).

The study is kept in ``--storage`` (SQLite in ``.tune/`` by default): run the command again to
continue it; run it on several machines against one PostgreSQL URL, each in its own clone, with
``--push origin`` so each pushes its experiments to the shared remotes.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from dllabs.errors import DataError, LabError, ParamsError, stage_errors
from dllabs.params import validate_params
from dllabs.tuning import experiments
from dllabs.tuning.labs import LABS, NO_VALIDATION, TunableLab, objective_key, tunable
from dllabs.tuning.pruning import TRIAL_ENV, TrialLink
from dllabs.tuning.report import write_report
from dllabs.tuning.space import SPACES, SearchSpace, load_space
from dllabs.tuning.storage import (
    DEFAULT_STORAGE,
    GRACE_SECONDS,
    PRUNERS,
    STARTUP_TRIALS,
    WARMUP_EPOCHS,
    make_pruner,
    open_storage,
    shown_url,
)
from dllabs.tuning.study import SAMPLERS, check_study_name, make_sampler, open_study

# The training section whose ``epochs`` bounds a trial's steps (Hyperband's largest budget).
EPOCHS_KEY = {
    "mlp": "mlp",
    "cnn": "cnn",
    "anomaly": "autoencoder",
    "transfer": "transfer.fine_tune",
}


class TrialFailed(LabError):
    """A trial's experiment failed; the study records it as failed and goes on."""


def parser() -> argparse.ArgumentParser:
    tune = argparse.ArgumentParser(
        prog="dl-labs tune",
        description="Search a lab's params with Optuna; every trial is a DVC experiment.",
    )
    add = tune.add_argument
    add("lab", choices=[*LABS, *NO_VALIDATION], help="the lab to tune")
    add("--trials", type=int, help="trials to run now (the study keeps the earlier ones)")
    add("--timeout", type=float, help="start no trial after this many seconds")
    add("--study", help="the study's name (default: the lab's); it names the experiments")
    add(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna storage URL (default "
        f"{DEFAULT_STORAGE}; postgresql://user:password@host/db for several machines)",
    )
    add("--sampler", choices=SAMPLERS, default="tpe")
    add("--pruner", choices=PRUNERS, default="median")
    add(
        "--startup-trials",
        type=int,
        default=STARTUP_TRIALS,
        help="the median pruner prunes nothing until this many trials have finished",
    )
    add(
        "--warmup-epochs",
        type=int,
        default=WARMUP_EPOCHS,
        help="the median pruner prunes no trial before this epoch",
    )
    add(
        "--grace-period",
        type=int,
        default=GRACE_SECONDS,
        metavar="SECONDS",
        help="a trial whose heartbeat is this old is failed and run again",
    )
    add("--workers", type=int, default=1, help="trials run at once on this machine")
    add("--space", type=Path, default=SPACES, help="the folder of search spaces (<lab>.yaml)")
    add(
        "-S",
        "--set",
        dest="fixed",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override every trial gets, as for dvc exp run -S (dataset=photos, "
        "data.images_dir=~/pets); repeatable",
    )
    add(
        "--push",
        metavar="GIT_REMOTE",
        help="dvc exp push each trial to this git remote (and the DVC remote)",
    )
    add("--no-test", action="store_true", help="leave the test split unread")
    add("--apply-best", action="store_true", help="dvc exp apply the best trial")
    return tune


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # SIGTERM (a scheduler's, kill) stops the search as Ctrl-C does: the running trials' experiments
    # are stopped, their trials recorded as failed, and the command exits 130.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    with stage_errors("tune"):
        run(args)


def _interrupted(signum: int, frame: Any) -> None:
    experiments.STOPPING.set()
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> None:
    """The search as parsed from the command line."""
    import optuna

    lab = tunable(args.lab)
    if args.trials is None and args.timeout is None and not args.apply_best:
        raise ParamsError("give a budget: --trials N and/or --timeout SECONDS")
    if args.trials is not None and args.trials < 1:
        raise ParamsError(f"--trials {args.trials}: expected 1 or more")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ParamsError(f"--timeout {args.timeout}: expected a positive number of seconds")
    for option, value, least in (
        ("--workers", args.workers, 1),
        ("--startup-trials", args.startup_trials, 0),
        ("--warmup-epochs", args.warmup_epochs, 0),
        ("--grace-period", args.grace_period, 2),
    ):
        if value < least:
            raise ParamsError(f"{option} {value}: expected {least} or more")
    if not Path("dvc.yaml").is_file():
        raise DataError("dvc.yaml: not found; run dl-labs tune at the repository's root")
    fixed = _fixed(args.fixed)
    start, note = experiments.trial_params(fixed)
    if note:
        print(f"tune: note: {note}", file=sys.stderr, flush=True)
    params = validate_params(start, source=" ".join(f"-S {o}" for o in fixed) or "params")
    space = load_space(args.lab, args.space, start)
    both = sorted({o.split("=", 1)[0] for o in fixed} & {d.key for d in space.dimensions})
    if both:
        raise ParamsError(f"-S {both[0]}: also searched by {space.source}; fix it in one place")
    objective = objective_key(lab, space.objective, str(space.source))
    name = check_study_name(args.study or args.lab)
    searching = args.trials is not None or args.timeout is not None
    storage = open_storage(args.storage, args.grace_period)
    # This command prints each trial itself, in one line; Optuna would add a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    grid = space.grid() if args.sampler == "grid" else None
    epochs = _epochs(params, EPOCHS_KEY[args.lab])
    pruner = make_pruner(args.pruner, epochs, args.startup_trials, args.warmup_epochs)
    sampler = make_sampler(args.sampler, params.base.seed, grid)
    study = open_study(name, storage, sampler, pruner, shown_url(args.storage))
    settings = {
        "lab": args.lab,
        "objective": objective,
        "metrics": lab.metrics,
        "sampler": args.sampler,
        "pruner": args.pruner,
        "seed": params.base.seed,
        "space": str(space.source),
        "set": fixed,
    }
    _claim(study, settings)
    with warnings.catch_warnings():  # Optuna calls metric names experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # What optuna-dashboard labels the objective's axis with.
        study.set_metric_names([f"validation {objective}"])
    base = experiments.baseline()
    if searching:
        search = Search(study, storage, args, lab, space, objective, base, epochs)
        search.check_names()
        study.optimize(
            search.trial,
            n_trials=args.trials,
            timeout=args.timeout,
            n_jobs=args.workers,
            catch=(TrialFailed,),
            gc_after_trial=False,
        )
    test = None
    if not args.no_test and _best(study) is not None:
        test = evaluate_best(study, lab, space, base, name, fixed)
    path = write_report(study, settings, test)
    best = _best(study)
    if best is None:
        raise DataError(f"no trial of study {name} has completed (their reasons: {path})")
    print(f"tune: report {path}; best trial {best.number}: validation {objective} {best.value:.4f}")
    if args.apply_best:
        applied = test["experiment"] if test else best.user_attrs["experiment"]
        done = experiments.apply(applied)
        if done:
            raise DataError(f"dvc exp apply {applied}: {done}")
        print(
            f"tune: applied {applied} to the workspace (params.yaml and outputs; dvc repro "
            "runs what it leaves stale)"
        )


class Search:
    """The objective Optuna calls once per trial (from ``--workers`` threads at once)."""

    def __init__(
        self,
        study: Any,
        storage: Any,
        args: argparse.Namespace,
        lab: TunableLab,
        space: SearchSpace,
        objective: str,
        base: str,
        epochs: int,
    ) -> None:
        self.study, self.storage, self.args, self.epochs = study, storage, args, epochs
        self.lab, self.space, self.objective, self.base = lab, space, objective, base
        self.printing = threading.Lock()
        # The stages run in DVC's temporary copy of the repository: a relative SQLite path must
        # name the study here.
        self.storage_url = absolute_sqlite(args.storage)

    def check_names(self) -> None:
        """A new study must not reuse the experiment names of an earlier one of the same name."""
        if self.study.get_trials(deepcopy=False):
            return
        taken = experiments.experiment_names(self.base, f"{self.study.study_name}-")
        if taken:
            raise DataError(
                f"study {self.study.study_name}: experiments {', '.join(taken[:3])} exist from an "
                "earlier study of that name; choose another --study, or dvc exp remove them"
            )

    def trial(self, trial: Any) -> float:
        import optuna

        overrides = self.space.suggest(trial)
        name = f"{self.study.study_name}-{trial.number}"
        trial.set_user_attr("experiment", name)
        env = {}
        if self.args.pruner != "none" and self.lab.prunes:
            args = self.args
            link = TrialLink(
                self.storage_url,
                self.study.study_name,
                trial._trial_id,
                os.getpid(),
                args.pruner,
                args.startup_trials,
                args.warmup_epochs,
                self.epochs,
            )
            env[TRIAL_ENV] = link.to_env()
        shown = ", ".join(f"{k}={_short(v)}" for k, v in overrides.items())
        log = experiments.LOGS / self.study.study_name / f"{trial.number}.log"
        done = experiments.run_experiment(
            name, overrides, self.lab.stage, env, log, self.args.fixed
        )
        if done.returncode == 0:
            value = self._score(name)
            self._report_restored(trial, name)
            self._say(
                f"trial {trial.number} ({shown}): validation {self.objective} {value:.4f} "
                f"in {done.seconds:.0f} s"
            )
            self._push(name)
            return value
        if experiments.STOPPING.is_set():
            trial.set_user_attr("error", "stopped (Ctrl-C or SIGTERM)")
            self._say(f"trial {trial.number} ({shown}): stopped")
            raise TrialFailed("stopped")
        attrs = self.storage.get_trial(trial._trial_id).user_attrs
        if "pruned_at_epoch" in attrs:
            self._say(
                f"trial {trial.number} ({shown}): pruned after epoch "
                f"{attrs['pruned_at_epoch']} ({done.seconds:.0f} s)"
            )
            raise optuna.TrialPruned(done.reason)
        trial.set_user_attr("error", done.reason)
        self._say(f"trial {trial.number} ({shown}): failed: {done.reason} (log: {done.log})")
        raise TrialFailed(done.reason)

    def _score(self, name: str) -> float:
        ref = experiments.experiment_ref(name, self.base)
        if ref is None:
            raise TrialFailed(f"experiment {name} ran but is not among the experiments")
        value = experiments.lookup(experiments.read_metrics(ref, self.lab.metrics), self.objective)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise TrialFailed(
                f"{name}: {self.lab.metrics} holds no number at {self.objective} ({value!r})"
            )
        return float(value)

    def _report_restored(self, trial: Any, name: str) -> None:
        """A trial whose training DVC restored from its run cache (params trained before, in this
        study or another) reported no epoch: report the epochs its training logged, so that the
        pruner compares later trials with it too, not only with the trials that trained."""
        if self.args.pruner == "none" or self.lab.history is None:
            return
        if self.storage.get_trial(trial._trial_id).intermediate_values:
            return
        ref = experiments.experiment_ref(name, self.base)
        try:
            losses = experiments.epoch_losses(ref, self.lab.history) if ref else []
        except (DataError, OSError, ValueError, IndexError) as exc:
            self._say(f"warning: trial {trial.number}: its epochs not reported ({exc})")
            return
        for step, loss in enumerate(losses):
            trial.report(-loss, step)
        trial.set_user_attr("restored", True)

    def _push(self, name: str) -> None:
        if self.args.push:
            problem = experiments.push(self.args.push, name)
            if problem:
                self._say(f"warning: dvc exp push {self.args.push} {name}: {problem}")

    def _say(self, line: str) -> None:
        with self.printing:
            print(f"tune: {line}", flush=True)


def evaluate_best(
    study: Any, lab: TunableLab, space: SearchSpace, base: str, name: str, fixed: list[str]
) -> dict[str, Any]:
    """The best trial's test score, read once: the experiment ``<study>-test-<trial>`` runs the
    lab's test stage with the trial's params (its training comes back from DVC's run cache). A
    score already recorded in the study is not computed again."""
    best = _best(study)
    key = f"test:{best.number}"
    if key in study.user_attrs:
        return study.user_attrs[key]
    experiment = f"{name}-test-{best.number}"
    if experiments.experiment_ref(experiment, base) is None:
        log = experiments.LOGS / name / f"test-{best.number}.log"
        done = experiments.run_experiment(
            experiment, space.values_of(best.params), lab.test_stage, {}, log, fixed
        )
        if done.returncode != 0:
            raise DataError(
                f"evaluating trial {best.number} on the test split failed: "
                f"{done.reason} (log: {log})"
            )
    ref = experiments.experiment_ref(experiment, base)
    value, low, high, n = experiments.scored(
        experiments.read_metrics(ref, lab.test_metrics), lab.test_key
    )
    record = {
        "trial": best.number,
        "experiment": experiment,
        "key": lab.test_key,
        "value": value,
        "low": low,
        "high": high,
        "n": n,
    }
    study.set_user_attr(key, record)
    interval = f" ({low:.4f} to {high:.4f}, n = {n})" if low is not None else ""
    print(
        f"tune: best trial {best.number} on the test split (read once): {lab.test_key} "
        f"{value:.4f}{interval}"
    )
    return record


def _short(value: Any) -> str:
    """A param's value as printed: floats to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative/path`` as ``sqlite:////absolute/path``; other URLs as they are."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or ":memory:" in url:
        return url
    return prefix + str(Path(url.removeprefix(prefix)).resolve())


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no complete trial
        return None


def _claim(study: Any, settings: dict[str, Any]) -> None:
    """Record what the study searches; refuse to continue it as a search of something else."""
    before = study.user_attrs.get("settings")
    if before is None:
        study.set_user_attr("settings", settings)
        return
    for key, default in (("lab", None), ("objective", None), ("set", [])):
        if before.get(key, default) != settings.get(key, default):
            what = "with -S" if key == "set" else key
            raise ParamsError(
                f"study {study.study_name} searches {what} {before.get(key, default)!r}, not "
                f"{settings.get(key, default)!r}; name a new study with --study"
            )


def _fixed(overrides: list[str]) -> list[str]:
    """``-S`` overrides, each ``key=value`` with a key (Hydra checks the rest)."""
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.strip() or key != key.strip():
            raise ParamsError(f"-S {override}: expected KEY=VALUE, as for dvc exp run -S")
    return list(overrides)


def _epochs(params: Any, dotted: str) -> int:
    node = params
    for part in dotted.split("."):
        node = getattr(node, part)
    return int(node.epochs)


if __name__ == "__main__":
    main(sys.argv[1:])
