"""The labs, one record each: everything the project keys by a lab's name lives here.

Adding a lab is one :class:`Lab` record in :data:`LABS`, its stages (``stages/`` and
``dvc.yaml``), its lab module and its documentation page (``docs/contributing/add-a-lab.md``).
What reads the records:

- ``dvc.yaml`` and the tests: every stage belongs to a lab or to :data:`SHARED_STAGES`
  (``tests/test_registry.py``), and the quick test pipeline shortens each lab's training with
  ``quick``;
- the ``evaluate`` stage, the results tables of ``reports/summary.md``, the README and the docs
  (:mod:`dllabs.evaluation.reports`, :mod:`dllabs.tooling.result_tables`): ``metrics``, ``rows``,
  ``headline``, ``plots``;
- ``dl-labs predict``: ``model``; the multi-process start-up (:mod:`dllabs.training.cluster`):
  ``multi_process``; the reproducibility check (:mod:`dllabs.tooling.reproducibility`): ``counts``;
- ``dl-labs tune`` (:mod:`dllabs.tuning.labs`): ``search``, or ``no_search`` saying why not;
- the documentation's figures (:mod:`dllabs.tooling.doc_figures`): ``figures``.

Imports nothing heavy (no NumPy, no Keras): the data stages and the command line read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dllabs.evaluation.rows import (
    RowBuilder,
    anomaly_rows,
    cbow_rows,
    classifier_rows,
    transfer_rows,
)

# Stages that serve every lab: fetch and split the data, tokenize the text, collect the results.
SHARED_STAGES = ("download", "preprocess", "tokenize", "evaluate")
# Integer keys of any lab's metrics that must match exactly on any platform (sizes and counts).
COMMON_COUNTS = frozenset({"n", "support", "parameters", "trainable_parameters"})


@dataclass(frozen=True)
class Search:
    """What ``dl-labs tune`` needs of a lab: ``stage`` (a trial runs up to it, never an
    ``evaluate_*`` stage, so no trial reads the test split) writes ``validation``, whose key
    ``objective`` is maximised by default (``objectives``: every key a search space may name);
    ``test_stage`` scores the best trial once, writing ``test_key`` in the lab's metrics file."""

    stage: str
    validation: str
    objective: str
    objectives: tuple[str, ...]
    test_stage: str
    test_key: str
    # The DVCLive folder of the training that reports each epoch for pruning (its
    # plots/metrics/eval/loss.tsv is the same validation loss, read back when DVC restores a
    # trial's training from its run cache); None where no pruner can line the epochs up.
    history: str | None = None


@dataclass(frozen=True)
class Figures:
    """What the documentation shows of a lab (``python -m dllabs.tooling.doc_figures``).

    ``model``: what captions call the trained model. ``outputs``: the run's outputs the figures
    read, as ``role=path`` words (paths that ``dvc.yaml`` declares, or files inside them).
    ``figures``: names of the figure kinds (:data:`dllabs.tooling.doc_figures.KINDS`), each drawn
    into ``docs/figures/<lab>/<name>.png``. ``run``: the params that captions quote to name the
    run, with the values ``dvc.lock`` recorded for it.
    """

    model: str
    outputs: str
    figures: str
    run: str

    def output(self, role: str) -> str:
        return dict(word.split("=") for word in self.outputs.split())[role]


@dataclass(frozen=True)
class Lab:
    """One lab. ``label`` opens its rows of the results table (``1. Feedforward network``)."""

    name: str  # what the command line and the files call it: mlp, cnn, ...
    label: str
    stages: tuple[str, ...]  # its dvc.yaml stages (a foreach stage as stage@item)
    model: str  # the folder `dl-labs predict` reads
    metrics: str  # its test metrics, written by its evaluation stage
    rows: RowBuilder  # its rows of the results table, from those metrics
    headline: tuple[str, ...]  # the metric column of each row kept in the README's short table
    # Pictures of its test results under plots/evaluate/ (title -> path), linked from the summary.
    plots: Mapping[str, str] = field(default_factory=dict)
    multi_process: tuple[str, ...] = ()  # its stages that train on several processes
    quick: Mapping[str, int] = field(default_factory=dict)  # params for the quick test pipeline
    counts: frozenset[str] = frozenset()  # its own integer metrics keys (with COMMON_COUNTS)
    search: Search | None = None
    no_search: str = ""  # why there is no search, where there is none
    figures: Figures | None = None  # what its documentation page shows


def image_classifier(name: str, label: str, model: str, run: str) -> Lab:
    """Labs 1 and 2: an image classifier trained by ``train_<name>`` on several processes when
    launched so, scored on the test images by the shared ``evaluate_classifier@<name>``, and
    searched on its validation accuracy. ``model`` is its name in tables and figures, ``run``
    the params its documentation figures name (``base.seed`` is added)."""
    train, evaluate = f"train_{name}", f"evaluate_classifier@{name}"
    return Lab(
        name=name,
        label=label,
        stages=(train, evaluate),
        model=f"models/{name}",
        metrics=f"metrics/{name}.json",
        rows=classifier_rows(model),
        headline=("accuracy",),
        plots={f"{model} misclassified test images": f"{name}/misclassified.png"},
        multi_process=(train,),
        quick={f"{name}.epochs": 1},
        counts=frozenset({"test_images"}),
        search=Search(
            stage=train,
            validation=f"metrics/validation/{name}.json",
            objective="accuracy",
            objectives=("accuracy",),
            test_stage=evaluate,
            test_key="test.accuracy",
            history=f"plots/{name}",
        ),
        figures=Figures(
            model=model,
            outputs=f"live=plots/{name} evaluation=plots/evaluate/{name} "
            "images=data/processed/images",
            figures="curves confusion misclassified",
            run=f"{run} base.seed",
        ),
    )


LABS: dict[str, Lab] = {
    lab.name: lab
    for lab in (
        image_classifier(
            "mlp",
            "1. Feedforward network",
            "MLP",
            run="data.images mlp.hidden_units mlp.optimizer mlp.learning_rate mlp.epochs",
        ),
        image_classifier(
            "cnn",
            "2. CNN",
            "CNN",
            run="data.images cnn.filters cnn.optimizer cnn.learning_rate cnn.epochs",
        ),
        Lab(
            name="anomaly",
            label="3. Anomaly detection",
            stages=("train_autoencoder", "threshold_anomaly", "evaluate_anomaly"),
            model="models/autoencoder",
            metrics="metrics/anomaly.json",
            rows=anomaly_rows,
            headline=("ROC AUC", "F1"),
            plots={
                "Anomaly: reconstruction errors and threshold": "anomaly/error_histogram.png",
                "Anomaly: inputs and reconstructions": "anomaly/reconstructions.png",
            },
            quick={"autoencoder.epochs": 1},
            search=Search(
                stage="threshold_anomaly",
                validation="metrics/validation/anomaly.json",
                # F1 at the chosen threshold by default: ROC AUC ignores the threshold it picks.
                objective="f1",
                objectives=("f1", "roc_auc", "pr_auc", "accuracy"),
                test_stage="evaluate_anomaly",
                test_key="test.f1",
                history="plots/autoencoder",
            ),
            figures=Figures(
                model="autoencoder",
                outputs="live=plots/autoencoder model=models/autoencoder/model.keras "
                "series=data/processed/series.npz",
                figures="curves errors reconstructions",
                run="data.anomaly data.normal_label autoencoder.hidden_units autoencoder.code_size "
                "autoencoder.loss anomaly.threshold_method base.seed",
            ),
        ),
        Lab(
            name="cbow",
            label="4. Word embeddings",
            stages=("train_cbow", "evaluate_cbow"),
            model="models/cbow",
            metrics="metrics/cbow.json",
            rows=cbow_rows,
            headline=("WordSim-353 Spearman",),
            plots={"CBOW: PCA of frequent words": "cbow/pca.png"},
            quick={"cbow.epochs": 1},
            counts=frozenset({"vocab_size", "corpus_tokens"}),
            no_search=(
                "cbow has no validation score to tune on: WordSim-353, SimLex-999 and the "
                "analogies are its test sets, so a search over them would report a tuned test "
                "score (and the training loss says nothing of the vectors' quality); tune mlp, "
                "cnn, anomaly or transfer"
            ),
            figures=Figures(
                model="CBOW model",
                outputs="live=plots/cbow vectors=models/cbow/word2vec",
                figures="curves pca",
                run="data.text cbow.vector_size cbow.window cbow.negative cbow.epochs base.seed",
            ),
        ),
        Lab(
            name="transfer",
            label="5. Transfer learning",
            stages=("pretrain_base", "train_transfer", "evaluate_transfer"),
            model="models/transfer",
            metrics="metrics/transfer.json",
            rows=transfer_rows,
            headline=("accuracy, mean ± std", "not applicable"),
            quick={
                "transfer.pretrain.epochs": 1,
                "transfer.feature_extraction.epochs": 1,
                "transfer.fine_tune.epochs": 1,
                "transfer.repeats": 1,
            },
            counts=frozenset(
                {"frozen_parameters", "repeats", "target_train_size", "unfrozen_layers"}
            ),
            search=Search(
                stage="train_transfer",
                validation="metrics/validation/transfer.json",
                # Fine-tuning's accuracy, mean over the draws: the lab's final model. No pruning:
                # a trial trains three models per draw, whose epochs no pruner can line up.
                objective="fine_tune.accuracy",
                objectives=("fine_tune.accuracy", "feature_extraction.accuracy"),
                test_stage="evaluate_transfer",
                test_key="fine_tune.accuracy",
            ),
            figures=Figures(
                model="transfer models",
                outputs="live=plots/transfer",
                figures="phases draws",
                run="data.images transfer.base transfer.target_train_size transfer.repeats "
                "transfer.trainable_base_layers transfer.fine_tune.unfreeze base.seed",
            ),
        ),
    )
}


def lab_named(name: str) -> Lab:
    """The lab called ``name``; a KeyError names the labs there are."""
    if name not in LABS:
        raise KeyError(f"unknown lab {name!r}; expected one of {', '.join(LABS)}")
    return LABS[name]


def multi_process_stages() -> tuple[str, ...]:
    """The stages that may train on several processes (every other refuses a cluster)."""
    return tuple(stage for lab in LABS.values() for stage in lab.multi_process)


def count_keys() -> frozenset[str]:
    """The integer metrics keys that must match on any platform, every lab's."""
    return COMMON_COUNTS.union(*(lab.counts for lab in LABS.values()))


def classifier_labs() -> tuple[str, ...]:
    """The image classifiers that ``evaluate_classifier`` scores (a ``foreach`` over them in
    ``dvc.yaml``), each writing an architecture table the summary shows."""
    return tuple(name for name, lab in LABS.items() if f"evaluate_classifier@{name}" in lab.stages)


def lab_of_stage(stage: str) -> str | None:
    """The lab a ``dvc.yaml`` stage belongs to; None for a shared stage (or an unknown one)."""
    return next((lab.name for lab in LABS.values() if stage in lab.stages), None)
