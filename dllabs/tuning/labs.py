"""What a search needs to know of each lab: the stage a trial runs up to, the validation metric it
maximises (and the others it may name instead), and the stage that reads the test split once the
search is over.

A trial is ``dvc exp run --temp <stage>``: the lab's training stage and whatever it depends on,
never an ``evaluate_*`` stage, so no trial reads the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

from dllabs.errors import ParamsError


@dataclass(frozen=True)
class TunableLab:
    """``stage`` writes ``metrics`` (``metrics/validation/<lab>.json``); ``objective`` is the key
    maximised by default, ``objectives`` every key a space may name; ``test_stage`` evaluates the
    best trial on the test split and writes ``test_key`` in ``test_metrics``."""

    stage: str
    metrics: str
    objective: str
    objectives: tuple[str, ...]
    test_stage: str
    test_metrics: str
    test_key: str
    # The DVCLive folder of the training that reports each epoch for pruning (its
    # plots/metrics/eval/loss.tsv is the same validation loss, read back when DVC restores a
    # trial's training from its run cache); None for transfer, whose trial trains three models per
    # draw, whose epochs no pruner can line up across trials.
    history: str | None = None

    @property
    def prunes(self) -> bool:
        return self.history is not None


LABS: dict[str, TunableLab] = {
    "mlp": TunableLab("train_mlp", "metrics/validation/mlp.json", "accuracy", ("accuracy",),
                      "evaluate_classifier@mlp", "metrics/mlp.json", "test.accuracy", "plots/mlp"),
    "cnn": TunableLab("train_cnn", "metrics/validation/cnn.json", "accuracy", ("accuracy",),
                      "evaluate_classifier@cnn", "metrics/cnn.json", "test.accuracy", "plots/cnn"),
    # F1 at the chosen threshold by default: ROC AUC ignores the threshold the lab picks.
    "anomaly": TunableLab("threshold_anomaly", "metrics/validation/anomaly.json", "f1",
                          ("f1", "roc_auc", "pr_auc", "accuracy"),
                          "evaluate_anomaly", "metrics/anomaly.json", "test.f1",
                          "plots/autoencoder"),
    # Fine-tuning's accuracy, mean over the draws: the lab's final model.
    "transfer": TunableLab("train_transfer", "metrics/validation/transfer.json",
                           "fine_tune.accuracy",
                           ("fine_tune.accuracy", "feature_extraction.accuracy"),
                           "evaluate_transfer", "metrics/transfer.json", "fine_tune.accuracy"),
}  # fmt: skip

# Why the CBOW lab has no search: its scores are its test sets.
NO_VALIDATION = {
    "cbow": "cbow has no validation score to tune on: WordSim-353, SimLex-999 and the analogies "
    "are its test sets, so a search over them would report a tuned test score (and the training "
    "loss says nothing of the vectors' quality); tune mlp, cnn, anomaly or transfer",
}


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
