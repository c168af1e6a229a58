"""A lab's search space, as data: ``conf/tune/<lab>.yaml``.

Each key of ``params:`` is a real param, by its dotted name, with how Optuna samples it::

    params:
      cnn.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}   # float, low/high, log scale
      cnn.batch_size: {int: [32, 128], step: 32}                # int, low/high, step
      cnn.filters: {choices: [[16, 32, 64], [32, 64, 128]]}     # categorical

The space is checked before the first trial, as ``params.yaml`` is: every key, and every value a
trial could take (both bounds, every choice), is set into the committed params and validated
against their schema (:func:`dllabs.params.validate_params`), so a misspelt key gets the same
"did you mean" and an out-of-range bound the same one line as ``params.yaml`` would. An optional
``objective:`` names which validation metric the study maximises, among those the lab offers
(:data:`dllabs.tuning.labs.LABS`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllabs.errors import ParamsError
from dllabs.params import PARAMS_FILE, read_yaml, validate_params

SPACES = Path("conf/tune")
KINDS = ("float", "int", "choices")


@dataclass(frozen=True)
class Dimension:
    """One param of the space: ``kind`` is ``float``, ``int`` or ``choices``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This param's value for an Optuna ``trial`` (its name in the study is the key)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.key, self.low, self.high, log=self.log, step=self.step or 1
            )
        # Optuna stores categorical choices as JSON scalars: a list is offered by its index's
        # label, and mapped back here.
        labels = [_label(choice) for choice in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]

    def extremes(self) -> tuple[Any, ...]:
        """Every value that must be valid for the whole range to be: both bounds, every choice."""
        return self.choices if self.kind == "choices" else (self.low, self.high)

    def grid(self) -> list[Any]:
        """The values a grid search tries: every choice, or every step between the bounds."""
        if self.kind == "choices":
            return [_label(choice) for choice in self.choices]
        if self.step is None:
            raise ParamsError(
                f"{self.key}: a grid needs a step (or choices) for every param; a {self.kind} "
                "range without one has no finite grid"
            )
        count = round((self.high - self.low) / self.step) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else values


@dataclass(frozen=True)
class SearchSpace:
    """A lab's dimensions, and the validation metric to maximise (``None``: the lab's default)."""

    lab: str
    source: Path
    dimensions: tuple[Dimension, ...]
    objective: str | None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``{param: value}`` for an Optuna trial: the ``-S`` overrides of its experiment."""
        return {d.key: d.suggest(trial) for d in self.dimensions}

    def grid(self) -> dict[str, list[Any]]:
        """The search space of Optuna's ``GridSampler``."""
        return {d.key: d.grid() for d in self.dimensions}

    def values_of(self, trial_params: dict[str, Any]) -> dict[str, Any]:
        """A finished trial's params as values (categorical labels mapped back to choices)."""
        values = {}
        for d in self.dimensions:
            value = trial_params[d.key]
            if d.kind == "choices":
                value = d.choices[[_label(c) for c in d.choices].index(value)]
            values[d.key] = value
        return values


def _label(choice: Any) -> Any:
    """A choice as Optuna stores it: a scalar as it is, anything else as its YAML flow text."""
    if choice is None or isinstance(choice, (bool, int, float, str)):
        return choice
    return override_value(choice)


def load_space(
    lab: str, folder: Path = SPACES, params: Path | dict[str, Any] = Path(PARAMS_FILE)
) -> SearchSpace:
    """``folder/<lab>.yaml``, checked against the schema with ``params`` (a params file, or the
    params every trial starts from, :func:`dllabs.tuning.experiments.trial_params`)."""
    source = Path(folder) / f"{lab}.yaml"
    if not source.is_file():
        shipped = sorted(p.stem for p in Path(folder).glob("*.yaml"))
        raise ParamsError(
            f"{source}: not found; a search space is conf/tune/<lab>.yaml (shipped: "
            f"{', '.join(shipped) or 'none'})"
        )
    raw = read_yaml(source)
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict):
        raise ParamsError(f"{source}: expected a mapping with params: {{param: range}}")
    unknown = sorted(set(raw) - {"params", "objective"})
    if unknown:
        raise ParamsError(f"{source}: unknown key {unknown[0]}; expected params and objective")
    if not raw["params"]:
        raise ParamsError(f"{source}: params is empty; a search needs one param at least")
    dimensions = tuple(_dimension(source, key, spec) for key, spec in raw["params"].items())
    objective = raw.get("objective")
    if objective is not None and not isinstance(objective, str):
        raise ParamsError(f"{source}: objective = {objective!r}; expected a metric's name")
    check_against_params(source, dimensions, params)
    return SearchSpace(lab, source, dimensions, objective)


def _dimension(source: Path, key: Any, spec: Any) -> Dimension:
    where = f"{source}: {key}"
    if not isinstance(key, str) or not key:
        raise ParamsError(f"{where}: a key must be a param's dotted name, such as cnn.dropout")
    if not isinstance(spec, dict):
        raise ParamsError(
            f"{where}: expected {{float: [low, high]}}, {{int: [low, high]}} or {{choices: [...]}}"
        )
    kinds = [k for k in KINDS if k in spec]
    extra = sorted(set(spec) - {*KINDS, "log", "step"})
    if len(kinds) != 1 or extra:
        raise ParamsError(
            f"{where}: {'unknown setting ' + extra[0] if extra else 'give exactly one of'} "
            f"{', '.join(KINDS) if not extra else '(expected float, int or choices; log; step)'}"
        )
    (kind,) = kinds
    if kind == "choices":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ParamsError(f"{where}: choices must be a non-empty list")
        labels = [_label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise ParamsError(f"{where}: choices repeat a value")
        if "log" in spec or "step" in spec:
            raise ParamsError(f"{where}: log and step apply to float and int ranges, not choices")
        return Dimension(key, kind, choices=tuple(choices))
    bounds = spec[kind]
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
        or not all(math.isfinite(b) for b in bounds)
    ):
        raise ParamsError(f"{where}: {kind} must be [low, high], two finite {kind} numbers")
    low, high = bounds
    if low > high:
        raise ParamsError(f"{where}: low {low} > high {high}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ParamsError(f"{where}: log = {log!r}; expected true or false")
    if log and low <= 0:
        raise ParamsError(f"{where}: a log scale needs low > 0, not {low}")
    if step is not None:
        if not isinstance(step, number) or isinstance(step, bool) or not step > 0:
            raise ParamsError(f"{where}: step = {step!r}; expected a positive {kind}")
        if log:
            raise ParamsError(f"{where}: step and log cannot both be set (Optuna samples one)")
    low, high = (float(low), float(high)) if kind == "float" else (low, high)
    return Dimension(key, kind, low, high, log, step)


def check_against_params(
    source: Path,
    dimensions: tuple[Dimension, ...],
    params: Path | dict[str, Any] = Path(PARAMS_FILE),
) -> None:
    """Set every extreme value of every dimension into ``params`` (a file's, or a mapping) and
    validate them: an unknown key or a value the schema refuses is one line naming the space
    file."""
    committed = params if isinstance(params, dict) else read_yaml(params)
    for dimension in dimensions:
        for value in dimension.extremes():
            trial = copy.deepcopy(committed)
            set_key(trial, dimension.key, value)
            validate_params(trial, source=f"{source} ({dimension.key} = {_label(value)})")


def set_key(params: dict, dotted: str, value: Any) -> None:
    """``params[a][b][c] = value`` for ``a.b.c``; a missing section is created, so that the
    schema, not a KeyError, names a misspelt one."""
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def override_value(value: Any) -> str:
    """``value`` as Hydra's override grammar reads it (``dvc exp run -S key=<this>``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
