"""What a search needs to know of each lab: the stage a trial runs up to, the validation metric it
maximises (and the others it may name instead), and the stage that reads the test split once the
search is over.

A trial is ``dvc exp run --temp <stage>``: the lab's training stage and whatever it depends on,
never an ``evaluate_*`` stage, so no trial reads the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

from dllabs.errors import ParamsError
from dllabs.labs.registry import LABS as REGISTRY
from dllabs.labs.registry import Lab, Search


@dataclass(frozen=True)
class TunableLab:
    """``stage`` writes ``metrics`` (``metrics/validation/<lab>.json``); ``objective`` is the key
    maximised by default, ``objectives`` every key a space may name; ``test_stage`` evaluates the
    best trial on the test split and writes ``test_key`` in ``test_metrics``. ``history`` is the
    DVCLive folder whose per-epoch validation loss the pruner reads; None where it cannot prune.
    Built from the lab's :class:`~dllabs.labs.registry.Search` record."""

    stage: str
    metrics: str
    objective: str
    objectives: tuple[str, ...]
    test_stage: str
    test_metrics: str
    test_key: str
    history: str | None = None

    @property
    def prunes(self) -> bool:
        return self.history is not None


def _tunable(lab: Lab, search: Search) -> TunableLab:
    return TunableLab(
        stage=search.stage,
        metrics=search.validation,
        objective=search.objective,
        objectives=search.objectives,
        test_stage=search.test_stage,
        test_metrics=lab.metrics,
        test_key=search.test_key,
        history=search.history,
    )


LABS: dict[str, TunableLab] = {
    name: _tunable(lab, lab.search) for name, lab in REGISTRY.items() if lab.search is not None
}
# Why a lab has no search (the CBOW lab: its scores are its test sets).
NO_VALIDATION = {name: lab.no_search for name, lab in REGISTRY.items() if lab.search is None}


def tunable(lab: str) -> TunableLab:
    """The lab's record, or one line saying why it cannot be tuned."""
    if lab in NO_VALIDATION:
        raise ParamsError(NO_VALIDATION[lab])
    if lab not in LABS:
        raise ParamsError(f"unknown lab {lab!r}; expected one of {', '.join(LABS)}")
    return LABS[lab]


def objective_key(lab: TunableLab, named: str | None, source: str) -> str:
    """The metric to maximise: ``named`` (a space's ``objective:``), checked, or the default."""
    if named is None:
        return lab.objective
    if named not in lab.objectives:
        raise ParamsError(
            f"{source}: objective = {named!r}; this lab's validation metrics: "
            f"{', '.join(lab.objectives)}"
        )
    return named
