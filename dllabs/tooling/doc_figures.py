"""Draw the committed run's figures into the documentation, and check that they stay its figures.

``python -m dllabs.tooling.doc_figures`` draws each lab's figures (:data:`LAB_FIGURES`) from the
outputs of the run that ``dvc.lock`` records: the DVCLive curves under ``plots/``, the confusion
matrices and test images, the autoencoder's reconstructions, the CBOW vectors' PCA map, and every
number a caption quotes from ``metrics/``. It writes:

- ``docs/figures/<lab>/<name>.png``: each figure, a small palette PNG (at most
  :data:`MAX_FIGURE_BYTES` each, :data:`MAX_TOTAL_BYTES` in all);
- ``docs/figures/figures.json``: for each figure, the outputs it was drawn from (with the md5
  that ``dvc.lock`` records for them), the facts its alt text quotes, and a digest of every array
  it draws, floats rounded to :data:`SIGNIFICANT` significant digits;
- every ``<!-- figure: LAB/NAME -->`` ... ``<!-- /figure -->`` block of the pages under
  ``docs/``: the figure as HTML, with its alt text and its caption, and paths relative to the
  page so that GitHub shows it too. ``<!-- figure: LAB/NAME short -->`` gives the short caption
  of the home page's gallery.

``--check`` changes nothing. It recomputes what each figure draws from the outputs in the
workspace and compares the digests, not the PNG bytes, so another matplotlib or font cannot make
it fail; it rebuilds every block from ``metrics/`` and ``dvc.lock``; and it fails, naming each
stale file and this command, when anything differs or a figure is missing or over its size budget.
Outputs missing from the workspace (a clone before ``make repro`` or ``dvc pull``) cannot be
compared: their figures are reported as not compared, with a note when ``dvc.lock`` records other
outputs than they were drawn from; their captions are still checked against ``metrics/``.
``make docs`` runs the check before it builds the site.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import io
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dllabs.errors import DataError, LabError, one_line
from dllabs.labs import registry
from dllabs.labs.registry import LABS, Figures
from dllabs.outputs import load_json, staged_outputs
from dllabs.tooling.result_tables import load_labs

PROG = "python -m dllabs.tooling.doc_figures"
FIGURES = Path("docs/figures")
RECORD = FIGURES / "figures.json"
# Pages are read on phones as well as laptops: every figure stays small to download.
MAX_FIGURE_BYTES = 150 * 1024
MAX_TOTAL_BYTES = 1536 * 1024
# Floats are compared at the precision a figure of this size can show; integers, booleans, labels
# and pixels exactly.
SIGNIFICANT = 4
# Drawn at 150 dots per inch, shown at 100 pixels per inch: sharp on high-density screens, and a
# figure 6.4 inches wide takes 640 pixels of the page's column.
DPI = 150
SHOWN_PER_INCH = 100


# The one per-lab table of this module is a view of the registry: each lab's record names the
# figures of its page (:class:`~dllabs.labs.registry.Figures`), its label and its metrics file.
LAB_FIGURES: dict[str, Figures] = {
    name: lab.figures for name, lab in LABS.items() if lab.figures is not None
}


# --- The run: dvc.lock and metrics/ ---------------------------------------------------------------


@dataclass
class Run:
    """The committed run as the figures see it, read from ``root``: ``dvc.lock`` (its outputs
    and the params it ran with) and every lab's metrics."""

    root: Path
    lock: dict[str, Any]
    metrics: dict[str, dict]
    # What two figures read alike, read once (the autoencoder's reconstructions).
    read: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Run:
        path = root / "dvc.lock"
        try:
            lock = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: not found; the figures are the run's it records") from None
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({one_line(exc)})") from None
        if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
            raise DataError(f"{path}: expected DVC's lock file, with a 'stages' mapping")
        try:
            metrics = load_labs(root)
        except json.JSONDecodeError as exc:
            raise DataError(f"metrics/: not valid JSON ({one_line(exc)})") from None
        return cls(root, lock, metrics)

    def param(self, key: str) -> Any:
        """The value of ``params.yaml``'s dotted ``key`` that ``dvc.lock`` records: the run's,
        whatever ``params.yaml`` says now."""
        parts = key.split(".")
        for stage in self.lock["stages"].values():
            recorded = (stage.get("params") or {}).get("params.yaml") or {}
            # dvc.lock keeps a key as dvc.yaml lists it: a whole section ("mlp") or a dotted key.
            for cut in range(len(parts), 0, -1):
                head = ".".join(parts[:cut])
                if head in recorded:
                    found, value = _inside(recorded[head], parts[cut:])
                    if found:
                        return value
        raise DataError(f"dvc.lock: no stage records the param {key}")

    def named(self, lab: str) -> str:
        """The params that name ``lab``'s run, as ``key=value`` pairs in ``<code>``."""
        pairs = (f"{key}={_as_yaml(self.param(key))}" for key in LAB_FIGURES[lab].run.split())
        return ", ".join(f"<code>{html.escape(pair)}</code>" for pair in pairs)

    def md5(self, source: str) -> str:
        """The md5 that ``dvc.lock`` records for the output that is, or holds, ``source``."""
        for stage in self.lock["stages"].values():
            for out in stage.get("outs") or []:
                path = str(out.get("path", "")).rstrip("/")
                if source == path or source.startswith(path + "/"):
                    return str(out.get("md5"))
        raise DataError(f"dvc.lock: no stage has {source} among its outputs")

    def get(self, lab: str, key: str) -> Any:
        """``key`` (dotted) of ``lab``'s metrics, or a one-line error naming the file."""
        value: Any = self.metrics[lab]
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise DataError(f"{_file(lab)}: no {key}; rerun its evaluation (dvc repro)")
            value = value[part]
        return value


def _label(lab: str) -> str:
    """How the results tables name ``lab`` (``1. Feedforward network``)."""
    return registry.LABS[lab].label


def _file(lab: str) -> str:
    """``lab``'s metrics file, whose numbers its captions quote."""
    return registry.LABS[lab].metrics


def _inside(value: Any, parts: list[str]) -> tuple[bool, Any]:
    """``value[parts[0]][parts[1]]...``, and whether every part was there."""
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _as_yaml(value: Any) -> str:
    """A param's value as ``params.yaml`` writes it: ``null``, ``true``, ``[256, 128]``."""
    return value if isinstance(value, str) else json.dumps(value)


# --- Reading the outputs --------------------------------------------------------------------------


def read_curve(path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The steps and the ``column`` values of a DVCLive ``.tsv`` file (one row per epoch)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: not found; its training stage writes it (dvc repro)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable ({one_line(exc)})") from None
    header = lines[0].split("\t") if lines else []
    if "step" not in header or column not in header:
        raise DataError(f"{path}: expected DVCLive's tab-separated columns step and {column}")
    at_step, at_value = header.index("step"), header.index(column)
    steps, values = [], []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        try:
            steps.append(int(cells[at_step]))
            values.append(float(cells[at_value]))
        except (ValueError, IndexError):
            raise DataError(
                f"{path}: line {number}: expected a step and a number: {line!r}"
            ) from None
    if not steps or not np.isfinite(values).all():
        raise DataError(f"{path}: expected a finite {column} for each epoch, found none or NaN")
    return np.array(steps), np.array(values)


def read_confusion(path: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The true and the predicted class of every test image, in test order, from DVCLive's
    ``confusion_matrix.json`` (a list of ``{"actual", "predicted"}`` class names)."""
    rows = load_json(path)
    index = {name: i for i, name in enumerate(class_names)}
    try:
        pairs = [(index[row["actual"]], index[row["predicted"]]) for row in rows]
    except (KeyError, TypeError):
        raise DataError(
            f"{path}: expected a list of {{'actual', 'predicted'}} pairs of the classes "
            f"{', '.join(class_names)}"
        ) from None
    if not pairs:
        raise DataError(f"{path}: no test images")
    return np.array([a for a, _ in pairs]), np.array([p for _, p in pairs])


def read_test_images(path: Path, rows: np.ndarray, expected: int) -> np.ndarray:
    """``rows`` of the ``expected`` test images in ``path`` (``preprocess``'s ``x_test.npy``),
    read alone from disk: a split need not fit in memory."""
    from dllabs.data.arrays import NpyRows

    images = NpyRows(path)
    if len(images) != expected or len(images.shape) != 4:
        raise DataError(
            f"{path}: images of shape {images.shape}; expected the {expected} test images "
            "(n, height, width, channels) that the confusion matrix counts"
        )
    return np.asarray(images[rows]) if len(rows) else np.zeros((0, *images.shape[1:]), np.uint8)


# --- What a figure draws, and how it is worded ----------------------------------------------------


@dataclass
class Drawn:
    """Everything a figure shows. ``arrays`` are digested and compared by ``--check``; ``facts``
    are the few numbers and words its alt text quotes (recorded, so that pages are rebuilt on a
    clone without the outputs); ``size`` is its width and height in inches."""

    arrays: dict[str, Any]
    facts: dict[str, Any]
    size: tuple[float, float]


@dataclass(frozen=True)
class Text:
    """A figure's words: its alt text (what it shows), its caption, and its caption in the home
    page's gallery."""

    alt: str
    caption: str
    short: str


@dataclass(frozen=True)
class Kind:
    """One kind of figure: the output roles (of :attr:`~dllabs.labs.registry.Figures.outputs`)
    it reads, how it reads them (``load``), draws them on a matplotlib figure (``draw``) and
    words them (``text``)."""

    sources: tuple[str, ...]
    load: Callable[[Run, str], Drawn]
    draw: Callable[[Any, Drawn], None]
    text: Callable[[Run, str, dict], Text]


def _round(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT` significant digits, as the facts keep numbers."""
    return float(f"{value:.{SIGNIFICANT}g}")


# Colours from Okabe and Ito's palette, told apart with any colour vision; training lines are
# solid and validation lines dashed, so the figures read in grey too.
TRAIN, VALIDATION, THIRD, BASELINE = "#0072B2", "#D55E00", "#009E73", "#7F7F7F"
TRAINING_LINE = {"color": TRAIN, "label": "training"}
VALIDATION_LINE = {"color": VALIDATION, "linestyle": "--", "label": "validation"}
MARKER_LINE = {"color": "black", "linestyle": ":", "linewidth": 1.4}


# Training curves (labs 1 to 4): loss and, where logged, accuracy, training and validation on one
# axis each, the epoch whose weights were kept marked. DVCLive counts steps from 0, the metrics'
# epochs from 1: the figures count as the metrics do.


def load_curves(run: Run, lab: str) -> Drawn:
    live = run.root / LAB_FIGURES[lab].output("live") / "plots" / "metrics"
    logged = [m for m in ("loss", "accuracy") if (live / "train" / f"{m}.tsv").exists()]
    panels, arrays = logged or ["loss"], {}
    for metric in panels:
        for part in ("train", "eval"):
            path = live / part / f"{metric}.tsv"
            if part == "eval" and not path.exists():
                continue  # the CBOW lab has no validation split
            steps, arrays[f"{metric}/{part}"] = read_curve(path, metric)
            arrays[f"{metric}/{part}/epoch"] = steps + 1
    facts: dict[str, Any] = {"panels": panels, "epochs": int(arrays["loss/train/epoch"][-1])}
    if "loss/eval" in arrays:
        loss = arrays["loss/eval"]
        if lab in ("mlp", "cnn"):
            best = int(run.get(lab, "model.best_epoch"))
        else:  # early stopping kept the weights of the lowest validation loss
            best = int(arrays["loss/eval/epoch"][int(np.argmin(loss))])
        arrays["best epoch"] = best
        facts |= {
            "best_epoch": best,
            "first_loss": _round(loss[0]),
            "lowest_loss": _round(min(loss)),
        }
    return Drawn(arrays, facts, (6.4, 1.9 + 2.2 * len(panels)))


def draw_curves(fig: Any, drawn: Drawn) -> None:
    a, panels = drawn.arrays, drawn.facts["panels"]
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, panels, strict=True):
        ax.plot(a[f"{metric}/train/epoch"], a[f"{metric}/train"], **TRAINING_LINE)
        if f"{metric}/eval" in a:
            ax.plot(a[f"{metric}/eval/epoch"], a[f"{metric}/eval"], **VALIDATION_LINE)
        if "best epoch" in a:
            ax.axvline(a["best epoch"], **MARKER_LINE, label=f"best epoch ({a['best epoch']})")
        ax.set_ylabel(metric)
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("epoch")


def text_curves(run: Run, lab: str, facts: dict) -> Text:
    model, what, epochs = LAB_FIGURES[lab].model, " and ".join(facts["panels"]), facts["epochs"]
    if "best_epoch" not in facts:  # CBOW: gensim's loss, no validation split
        alt = (
            f"A line chart of the {model}'s training loss over {epochs} epochs, falling steeply "
            "at first and then slowly."
        )
        caption = (
            f"The {model}'s training loss per epoch, as gensim reports it (summed over the "
            f"epoch's words): {epochs} epochs, ending at {run.get(lab, 'final_loss'):,.1f}. There "
            "is no validation split: the vectors are scored afterwards on word-similarity sets "
            f"(WordSim-353 Spearman {run.get(lab, 'wordsim353.spearman'):.4f}, n "
            f"{run.get(lab, 'wordsim353.n')}; {_file(lab)}). Run: {run.named(lab)}."
        )
        return Text(alt, caption, f"{_label(lab)}: training loss per epoch.")
    best = facts["best_epoch"]
    charts = "Two line charts" if len(facts["panels"]) > 1 else "A line chart"
    alt = (
        f"{charts} over {epochs} epochs of the {model}'s {what}, training as a solid line and "
        f"validation as a dashed one; validation loss falls from {facts['first_loss']:.3g} to "
        f"{facts['lowest_loss']:.3g}, and a dotted vertical line marks epoch {best}."
    )
    test = run.get(lab, "test")
    if lab == "anomaly":
        kept = "the lowest loss on the normal validation rows, whose weights were kept"
        scores = f"On the test rows the detector scores ROC AUC {test['roc_auc']:.4f}"
        headline = f"test ROC AUC {test['roc_auc']:.4f}"
    else:
        kept = "the lowest validation loss: early stopping restored its weights"
        ran = run.get(lab, "model.epochs_trained")
        scores = f"It ran {ran} epochs; test accuracy {test['accuracy']:.4f}"
        headline = f"test accuracy {test['accuracy']:.4f}"
    caption = (
        f"The {model}'s {what} per epoch on the training rows (solid) and the validation rows "
        f"(dashed). The dotted line marks epoch {best}, {kept}. {scores} (n {test['n']}; "
        f"{_file(lab)}). Run: {run.named(lab)}."
    )
    return Text(alt, caption, f"{_label(lab)}: {what} per epoch; {headline}.")


# Confusion matrix and misclassified test images (labs 1 and 2), from the evaluation's DVCLive
# confusion matrix (in test order) and the test images.


def _test_labels(run: Run, lab: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The class names (in label order: the metrics' per-class order) and each test image's
    true and predicted class."""
    names = list(run.get(lab, "test.per_class"))
    folder = run.root / LAB_FIGURES[lab].output("evaluation")
    return names, *read_confusion(folder / "plots" / "sklearn" / "confusion_matrix.json", names)


def load_confusion(run: Run, lab: str) -> Drawn:
    names, actual, predicted = _test_labels(run, lab)
    k = len(names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (actual, predicted), 1)
    off = [(int(counts[t, p]), names[t], names[p]) for t in range(k) for p in range(k) if t != p]
    errors = [[t, p, n] for n, t, p in sorted(off, key=lambda e: -e[0]) if n]
    side = min(7.0, 1.6 + 0.42 * k)
    drawn = {"counts": counts, "classes": np.array(names)}
    return Drawn(drawn, {"classes": names, "errors": errors}, (side + 0.5, side))


def draw_confusion(fig: Any, drawn: Drawn) -> None:
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle

    counts, names = drawn.arrays["counts"], [str(name) for name in drawn.arrays["classes"]]
    ax = fig.subplots()
    # A square-root scale: one error beside a diagonal of dozens still shows.
    ax.imshow(counts, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=max(1, counts.max())))
    for (t, p), count in np.ndenumerate(counts):
        if count and len(names) <= 20:  # more classes: the colours alone
            colour = "white" if count > 0.45 * counts.max() else "black"
            ax.text(p, t, str(count), ha="center", va="center", fontsize=12, color=colour)
        if count and t != p:  # an error: outlined
            ax.add_patch(Rectangle((p - 0.5, t - 0.5), 1, 1, fill=False, color=VALIDATION, lw=2))
    ax.set_xticks(range(len(names)), names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.grid(False)


def text_confusion(run: Run, lab: str, facts: dict) -> Text:
    test, model, k = run.get(lab, "test"), LAB_FIGURES[lab].model, len(facts["classes"])
    wrong = test["n"] - round(test["accuracy"] * test["n"])
    listed = "; ".join(f"true {t} predicted {p}: {n}" for t, p, n in facts["errors"][:6])
    alt = (
        f"A {k} by {k} grid of test-image counts, true classes {', '.join(facts['classes'])} "
        "down the side and predicted classes along the bottom; the diagonal holds the correct "
        "predictions, and the outlined cells off it the errors"
        + (f" ({listed})." if listed else ", of which there are none.")
    )
    caption = (
        f"The {model}'s test confusion matrix: rows are the true classes, columns the predicted "
        f"ones, each cell a count of test images; {wrong} of {test['n']} lie off the diagonal, "
        f"outlined. Accuracy {test['accuracy']:.4f}, macro F1 {test['macro_f1']:.4f} "
        f"({_file(lab)}). Run: {run.named(lab)}."
    )
    short = f"{_label(lab)}: the test confusion matrix; {wrong} of {test['n']} misclassified."
    return Text(alt, caption, short)


MISCLASSIFIED_SHOWN = 12  # two rows of six; the caption counts the rest


def load_misclassified(run: Run, lab: str) -> Drawn:
    names, actual, predicted = _test_labels(run, lab)
    wrong = np.flatnonzero(actual != predicted)
    shown = wrong[:MISCLASSIFIED_SHOWN]
    path = run.root / LAB_FIGURES[lab].output("images") / "x_test.npy"
    images = read_test_images(path, shown, len(actual))
    arrays = {"images": images, "true": actual[shown], "predicted": predicted[shown]}
    arrays["classes"] = np.array(names)
    facts = {
        "wrong": len(wrong),
        "n": len(actual),
        "image_shape": list(images.shape[1:]),
        "shown": [[names[actual[i]], names[predicted[i]]] for i in shown],
    }
    columns = min(6, max(1, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    return Drawn(arrays, facts, (0.6 + 1.3 * columns, 0.2 + 1.75 * rows))


def draw_misclassified(fig: Any, drawn: Drawn) -> None:
    images, names = drawn.arrays["images"], [str(n) for n in drawn.arrays["classes"]]
    pairs = zip(drawn.arrays["true"], drawn.arrays["predicted"], strict=True)
    columns = min(6, max(1, len(images)))
    axes = fig.subplots(max(1, -(-len(images) // columns)), columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, (true, predicted) in zip(axes.flat, images, pairs, strict=False):
        grey = image.shape[-1] == 1
        shown = image[..., 0] if grey else image
        ax.imshow(shown, cmap="gray_r" if grey else None, interpolation="nearest")
        ax.set_title(f"true {names[true]}\npredicted {names[predicted]}", fontsize=13)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no misclassified\ntest images", ha="center", va="center")


def text_misclassified(run: Run, lab: str, facts: dict) -> Text:
    shown, wrong = facts["shown"], facts["wrong"]
    height, width, *channels = facts["image_shape"]
    colour = "colour" if channels == [3] else "greyscale"
    listed = "; ".join(f"a {t} predicted as {p}" for t, p in shown)
    alt = (
        f"{len(shown)} {colour} test images of {height} by {width} pixels, each titled with its "
        f"true and predicted class: {listed}."
        if shown
        else "No images: every test image was classified correctly."
    )
    which = f"the first {len(shown)} of the {wrong}" if wrong > len(shown) else f"the {wrong}"
    caption = (
        f"The {LAB_FIGURES[lab].model}'s misclassified test images: {which} of {facts['n']} it got "
        f"wrong (accuracy {run.get(lab, 'test.accuracy'):.4f}, {_file(lab)}), each titled "
        f"with its true and predicted class; greyscale images are drawn dark on light. "
        f"Run: {run.named(lab)}."
    )
    return Text(alt, caption, f"{_label(lab)}: the {wrong} misclassified test images.")


# Anomaly detection (lab 3): the test rows' reconstruction errors against the threshold, and a few
# rows beside their reconstructions. The errors are the evaluation's own: the saved autoencoder
# run on the test rows with the kernels the stage ran, measured with the loss it was trained on.


def reconstruct(run: Run) -> dict[str, np.ndarray]:
    """The test rows, the autoencoder's reconstructions and errors, and the rows' labels (with
    the kernels the evaluation ran where the command started as :func:`start` starts it)."""
    from dllabs.labs.anomaly import reconstruction_errors
    from dllabs.models.loading import load_model
    from dllabs.outputs import load_npz
    from dllabs.prediction.batches import predict

    if "reconstructed" not in run.read:
        lab = LAB_FIGURES["anomaly"]
        required = ("x_test", "y_test", "label_test", "row_shape")
        data = load_npz(run.root / lab.output("series"), required=required)
        rebuilt = predict(load_model(run.root / lab.output("model")), data["x_test"])
        errors = reconstruction_errors(data["x_test"], rebuilt, run.param("autoencoder.loss"))
        anomaly = data["y_test"].astype(bool)
        run.read["reconstructed"] = {
            **data,
            "reconstructed": rebuilt,
            "errors": errors,
            "anomaly": anomaly,
        }
    return run.read["reconstructed"]


def load_errors(run: Run, lab: str) -> Drawn:
    r = reconstruct(run)
    errors, anomaly = r["errors"], r["anomaly"]
    edges = np.histogram_bin_edges(errors, bins=40)
    arrays = {
        "edges": edges,
        "normal": np.histogram(errors[~anomaly], edges)[0],
        "anomalous": np.histogram(errors[anomaly], edges)[0],
        "threshold": float(run.get(lab, "threshold")),
    }
    facts = {
        "normal_labels": sorted({str(label) for label in r["label_test"][~anomaly]}),
        "lowest": _round(errors.min()),
        "highest": _round(errors.max()),
    }
    return Drawn(arrays, facts, (6.4, 3.9))


def draw_errors(fig: Any, drawn: Drawn) -> None:
    a = drawn.arrays
    ax = fig.subplots()
    for name, colour in (("normal", TRAIN), ("anomalous", VALIDATION)):
        label = f"{name} ({a[name].sum()})"
        ax.stairs(a[name], a["edges"], fill=True, alpha=0.55, color=colour, label=label)
    threshold = a["threshold"]
    ax.axvline(threshold, color="black", linestyle="--", lw=1.6, label=f"threshold {threshold:.4g}")
    ax.set_xlabel("reconstruction error")
    ax.set_ylabel("test rows")
    ax.legend(loc="best")


def text_errors(run: Run, lab: str, facts: dict) -> Text:
    test, confusion = run.get(lab, "test"), run.get(lab, "test.confusion")
    threshold, method = run.get(lab, "threshold"), run.get(lab, "method")
    normal, anomalous = confusion["tn"] + confusion["fp"], confusion["tp"] + confusion["fn"]
    labels = ", ".join(facts["normal_labels"])
    alt = (
        f"A histogram of the reconstruction errors of {normal} normal test rows "
        f"(label {labels}) and {anomalous} anomalous ones, from {facts['lowest']:.3g} to "
        f"{facts['highest']:.3g}, with a dashed vertical line at the threshold {threshold:.4g}: "
        f"{confusion['fp']} normal rows lie at or above it and {confusion['fn']} anomalous rows "
        "below."
    )
    caption = (
        f"Reconstruction errors of the {test['n']} test rows, normal (label {labels}) and "
        f"anomalous, with the threshold {threshold:.4g} that threshold_anomaly chose ({method}) "
        f"from training and validation rows alone: a row at or above it is flagged. "
        f"{confusion['tp']} of {anomalous} anomalies and {confusion['fp']} of {normal} normal "
        f"rows are flagged: precision {test['precision']:.4f}, recall {test['recall']:.4f}, F1 "
        f"{test['f1']:.4f} ({_file(lab)}). Run: {run.named(lab)}."
    )
    short = f"{_label(lab)}: test reconstruction errors and the threshold; F1 {test['f1']:.4f}."
    return Text(alt, caption, short)


PER_CLASS_SHOWN = 4  # test rows of each class shown beside their reconstructions


def load_reconstructions(run: Run, lab: str) -> Drawn:
    r = reconstruct(run)
    anomaly = r["anomaly"]
    # stages/evaluate_anomaly.py's own draw: the rows that `dvc plots show` draws.
    rng = np.random.default_rng(0)
    normal, anomalous = np.flatnonzero(~anomaly), np.flatnonzero(anomaly)
    picks = np.concatenate(
        [
            rng.choice(normal, min(PER_CLASS_SHOWN, len(normal)), replace=False),
            rng.choice(anomalous, min(PER_CLASS_SHOWN, len(anomalous)), replace=False),
        ]
    )
    threshold = float(run.get(lab, "threshold"))
    shape = [int(d) for d in r["row_shape"]]
    arrays = {
        "inputs": r["x_test"][picks],
        "reconstructions": r["reconstructed"][picks],
        "errors": r["errors"][picks],
        "anomaly": anomaly[picks],
        "labels": np.array([str(label) for label in r["label_test"][picks]]),
        "row shape": np.array(shape),
        "threshold": threshold,
    }
    facts = {
        "row_shape": shape,
        "normal": int((~anomaly[picks]).sum()),
        "anomalous": int(anomaly[picks].sum()),
        "flagged": int((r["errors"][picks] >= threshold).sum()),
    }
    columns = max(facts["normal"], facts["anomalous"], 1)
    return Drawn(arrays, facts, (0.9 + 1.45 * columns, 6.6 if len(shape) == 2 else 4.4))


def draw_reconstructions(fig: Any, drawn: Drawn) -> None:
    a = drawn.arrays
    shape, threshold = tuple(int(d) for d in a["row shape"]), a["threshold"]
    groups = [np.flatnonzero(~a["anomaly"]), np.flatnonzero(a["anomaly"])]
    as_image = len(shape) == 2
    axes = fig.subplots(4 if as_image else 2, max(len(g) for g in groups), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    values = np.concatenate([a["inputs"].ravel(), a["reconstructions"].ravel()])
    scale = {"cmap": "gray_r", "vmin": values.min(), "vmax": values.max()}
    for g, rows in enumerate(groups):
        for c, i in enumerate(rows):
            verdict = "flagged" if a["errors"][i] >= threshold else "not flagged"
            title = f"{a['labels'][i]}: {a['errors'][i]:.3f}\n{verdict}"
            if as_image:  # each row above its reconstruction
                for r, data in ((2 * g, a["inputs"][i]), (2 * g + 1, a["reconstructions"][i])):
                    axes[r, c].set_axis_on()  # for the row's label; no ticks, no frame
                    axes[r, c].set(xticks=[], yticks=[])
                    axes[r, c].spines[:].set_visible(False)
                    axes[r, c].imshow(np.reshape(data, shape), interpolation="nearest", **scale)
                axes[2 * g, c].set_title(title, fontsize=12.5)
            else:  # a series and its reconstruction on one axis
                ax = axes[g, c]
                ax.set_axis_on()
                ax.plot(a["inputs"][i], **{**TRAINING_LINE, "label": "input"})
                ax.plot(a["reconstructions"][i], **{**VALIDATION_LINE, "label": "reconstruction"})
                ax.set_title(title, fontsize=12.5)
                ax.tick_params(labelsize=10)
    names = ("normal", "rebuilt", "anomalous", "rebuilt") if as_image else ("normal", "anomalous")
    for r, name in enumerate(names):
        axes[r, 0].set_ylabel(name, fontsize=13)
    if not as_image:
        axes[0, 0].legend(fontsize=10)


def text_reconstructions(run: Run, lab: str, facts: dict) -> Text:
    threshold = run.get(lab, "threshold")
    normal, anomalous, flagged = facts["normal"], facts["anomalous"], facts["flagged"]
    verdicts = f"{flagged} of {normal + anomalous} are flagged at threshold {threshold:.4g}"
    if len(facts["row_shape"]) == 2:
        height, width = facts["row_shape"]
        alt = (
            f"A grid of {height} by {width} pixel images, drawn dark on light: {normal} normal "
            f"test rows above their reconstructions, then {anomalous} anomalous rows above "
            f"theirs, each titled with its label, its reconstruction error and whether it is "
            f"flagged ({verdicts})."
        )
    else:
        alt = (
            f"Line charts of {normal} normal and {anomalous} anomalous test rows, each with its "
            f"reconstruction as a dashed line and titled with its label, its reconstruction error "
            f"and whether it is flagged ({verdicts})."
        )
    caption = (
        f"Test rows above their reconstructions: {normal} normal and {anomalous} anomalous rows "
        f"(the evaluation's fixed draw), each titled with its label and its reconstruction error. "
        f"Trained on normal rows only, the autoencoder rebuilds those well and the others badly; "
        f"a row is flagged at an error of {threshold:.4g} or more ({_file(lab)}). "
        f"Run: {run.named(lab)}."
    )
    return Text(alt, caption, f"{_label(lab)}: test rows and their reconstructions.")


# Word embeddings (lab 4): the most frequent words' CBOW vectors on their first two principal
# components, as evaluate_cbow maps them.


def load_pca(run: Run, lab: str) -> Drawn:
    from sklearn.decomposition import PCA

    from dllabs.models.word2vec_files import load_vectors

    vectors = load_vectors(run.root / LAB_FIGURES[lab].output("vectors"))
    words = vectors.index_to_key[: int(run.param("cbow.pca_words"))]
    if len(words) < 2:
        raise DataError(f"{LAB_FIGURES[lab].output('vectors')}: fewer than 2 words to map")
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(np.stack([vectors[word] for word in words]))
    explained = [_round(100 * share) for share in pca.explained_variance_ratio_]
    facts = {"words": len(words), "explained": explained, "first": list(words[:5])}
    return Drawn({"points": points, "words": np.array(words)}, facts, (7.2, 6.2))


def draw_pca(fig: Any, drawn: Drawn) -> None:
    points, share = drawn.arrays["points"], drawn.facts["explained"]
    ax = fig.subplots()
    ax.scatter(points[:, 0], points[:, 1], s=14, color=TRAIN, alpha=0.7)
    # Labels in frequency order, each left out where it would cover one already placed: the
    # centre of the map is crowded, and overlapping words read as neither.
    fig.draw_without_rendering()  # lays the axes out, so that the labels' extents are final
    placed: list[Any] = []
    for word, xy in zip(drawn.arrays["words"], points, strict=True):
        label = ax.annotate(str(word), xy, xytext=(3, 2), textcoords="offset points", fontsize=10.5)
        box = label.get_window_extent()
        if any(box.overlaps(other) for other in placed):
            label.remove()
        else:
            placed.append(box)
    ax.set_xlabel(f"principal component 1 ({share[0]:.1f}% of the variance)")
    ax.set_ylabel(f"principal component 2 ({share[1]:.1f}%)")


def text_pca(run: Run, lab: str, facts: dict) -> Text:
    words, share = facts["words"], facts["explained"]
    alt = (
        f"A scatter plot of {words} points labelled with their words, the most frequent being "
        f"{', '.join(facts['first'])}; the axes are the first two principal components, "
        f"{share[0]:.2g}% and {share[1]:.2g}% of the variance."
    )
    caption = (
        f"The {words} most frequent words of the corpus: their "
        f"{run.param('cbow.vector_size')}-dimensional CBOW vectors projected on their first two "
        f"principal components, where words used in like contexts lie close (a word whose "
        f"label would cover a more frequent one's is left unlabelled). The vocabulary "
        f"holds {run.get(lab, 'vocab_size'):,} words; WordSim-353 Spearman "
        f"{run.get(lab, 'wordsim353.spearman'):.4f} (n {run.get(lab, 'wordsim353.n')}; "
        f"{_file(lab)}). Run: {run.named(lab)}."
    )
    short = f"{_label(lab)}: the {words} most frequent words on two principal components."
    return Text(alt, caption, short)


# Transfer learning (lab 5): draw 0's feature extraction then fine-tuning on one axis, beside the
# baseline from scratch; and every draw's test accuracy, from metrics/ alone.

PHASES = {
    "scratch": "from scratch",
    "feature_extraction": "feature extraction",
    "fine_tune": "fine-tuning",
}
# DVCLive's folders of each phase's training and validation accuracy in stages/train_transfer.py's
# two runs: scratch/, and transfer/ whose steps run on from one phase into the next.
PHASE_LOGS = {
    "scratch": ("scratch/plots/metrics/train", "scratch/plots/metrics/eval"),
    "feature_extraction": (
        "transfer/plots/metrics/train/feature_extraction",
        "transfer/plots/metrics/feature_extraction/eval",
    ),
    "fine_tune": (
        "transfer/plots/metrics/train/fine_tune",
        "transfer/plots/metrics/fine_tune/eval",
    ),
}
PHASE_COLOURS = {"scratch": BASELINE, "feature_extraction": TRAIN, "fine_tune": THIRD}


def _transfer(run: Run, lab: str) -> dict:
    if "not_applicable" in run.metrics[lab]:
        reason = run.metrics[lab]["not_applicable"]
        raise DataError(f"{_file(lab)}: the lab did not apply ({reason}); no figures")
    return run.metrics[lab]


def load_phases(run: Run, lab: str) -> Drawn:
    _transfer(run, lab)
    live, arrays = run.root / LAB_FIGURES[lab].output("live"), {}
    for phase, folders in PHASE_LOGS.items():
        for part, folder in zip(("train", "eval"), folders, strict=True):
            steps, arrays[f"{phase}/{part}"] = read_curve(
                live / folder / "accuracy.tsv", "accuracy"
            )
            arrays[f"{phase}/{part}/epoch"] = steps + 1
    first = {phase: run.get(lab, f"{phase}.per_repeat.0") for phase in PHASES}  # draw 0's
    boundary = int(first["feature_extraction"]["epochs"])
    # Fine-tuning counts its best epoch from the start of its phase.
    best = {phase: int(first[phase]["best_epoch"]) for phase in PHASES}
    best["fine_tune"] += boundary
    arrays |= {"boundary": boundary, "best": np.array(list(best.values()))}
    facts = {"boundary": boundary, "best": best, "end": int(arrays["fine_tune/eval/epoch"][-1])}
    return Drawn(arrays, facts, (6.4, 4.4))


def draw_phases(fig: Any, drawn: Drawn) -> None:
    a = drawn.arrays
    ax = fig.subplots()
    for phase, title in PHASES.items():
        colour, style = PHASE_COLOURS[phase], "--" if phase == "scratch" else "-"
        ax.plot(a[f"{phase}/train/epoch"], a[f"{phase}/train"], color=colour, lw=0.9, alpha=0.55)
        epochs, accuracy = a[f"{phase}/eval/epoch"], a[f"{phase}/eval"]
        ax.plot(epochs, accuracy, color=colour, linestyle=style, label=title)
        kept = epochs == drawn.facts["best"][phase]
        ax.plot(epochs[kept], accuracy[kept], "o", color=colour, ms=7, markeredgecolor="black")
    ax.axvline(a["boundary"] + 0.5, **MARKER_LINE)
    where = ax.get_xaxis_transform()
    ax.text(a["boundary"] + 1.5, 0.04, "fine-tuning\nstarts", transform=where, fontsize=12)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower center", title="validation (thin: training)", title_fontsize=12)


def text_phases(run: Run, lab: str, facts: dict) -> Text:
    boundary, best = facts["boundary"], facts["best"]
    tested = (
        f"{title} {run.get(lab, f'{p}.per_repeat.0.accuracy'):.4f}" for p, title in PHASES.items()
    )
    alt = (
        f"A line chart of accuracy from 0 to 1 over {facts['end']} epochs: feature extraction "
        f"up to epoch {boundary}, then fine-tuning after a dotted vertical line, and the model "
        "from scratch as a dashed grey line; thick lines are validation accuracy, thin ones "
        "training accuracy, and dots mark the epochs whose weights were kept "
        f"({best['scratch']}, {best['feature_extraction']} and {best['fine_tune']})."
    )
    caption = (
        f"Draw 0 of the transfer lab: feature extraction (the pretrained base frozen, a new head) "
        f"for {boundary} epochs, then fine-tuning from epoch {boundary + 1} (dotted line), against "
        f"the same network trained from scratch on the same "
        f"{run.get(lab, 'target_train_size')} labelled images per class (dashed). Thick lines: "
        "validation accuracy; thin: training accuracy; dots: the epochs whose weights were kept. "
        f"This draw's test accuracy: {', '.join(tested)} ({_file(lab)}). "
        f"Run: {run.named(lab)}."
    )
    return Text(alt, caption, f"{_label(lab)}: feature extraction, then fine-tuning.")


def load_draws(run: Run, lab: str) -> Drawn:
    _transfer(run, lab)
    arrays: dict[str, Any] = {}
    for phase in PHASES:
        per_draw = run.get(lab, f"{phase}.per_repeat")
        interval = run.get(lab, f"{phase}.ci95.accuracy")
        arrays[f"{phase}/draws"] = np.array(
            [per_draw[r]["accuracy"] for r in sorted(per_draw, key=int)]
        )
        arrays[f"{phase}/mean"] = float(run.get(lab, f"{phase}.accuracy"))
        arrays[f"{phase}/interval"] = np.array([interval["low"], interval["high"]])
    return Drawn(arrays, {"repeats": int(run.get(lab, "repeats"))}, (6.0, 4.2))


def draw_draws(fig: Any, drawn: Drawn) -> None:
    a = drawn.arrays
    ax = fig.subplots()
    x, draws = np.arange(len(PHASES)), np.stack([a[f"{p}/draws"] for p in PHASES])
    for r, column in enumerate(draws.T):  # a draw's three models saw the same images: joined
        label = "one draw" if r == 0 else None
        ax.plot(x, column, color=BASELINE, lw=1, alpha=0.7, marker="o", ms=6, label=label)
    for i, phase in enumerate(PHASES):
        mean, (low, high) = a[f"{phase}/mean"], a[f"{phase}/interval"]
        label = "mean, 95% interval" if i == 0 else None
        bar = [[mean - low], [high - mean]]
        ax.errorbar(i + 0.18, mean, bar, fmt="s", color="black", capsize=5, ms=7, label=label)
    ax.set_xticks(x, list(PHASES.values()))
    ax.set_xlim(-0.4, len(PHASES) - 0.5)
    ax.set_ylim(min(draws.min(), *(a[f"{p}/interval"][0] for p in PHASES)) - 0.02, 1.01)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")


def text_draws(run: Run, lab: str, facts: dict) -> Text:
    size, n, repeats = (
        run.get(lab, "target_train_size"),
        run.get(lab, "scratch.n"),
        facts["repeats"],
    )
    means = ", ".join(
        f"{title} {run.get(lab, f'{p}.accuracy'):.4f} ± {run.get(lab, f'{p}.accuracy_std'):.4f}"
        for p, title in PHASES.items()
    )
    alt = (
        "A dot plot of test accuracy for three models, from scratch, feature extraction and "
        f"fine-tuning: {repeats} grey dots each, one per draw of labelled images, joined across "
        "the models of a draw, and beside them a black square with error bars for each model's "
        f"mean and 95% interval: {means}."
    )
    caption = (
        f"Test accuracy on {n} target test images after each of {repeats} draws of {size} "
        "labelled images per class: the three models of a draw saw the same images (grey lines "
        f"join them); black: the mean and its 95% t interval over the draws. Mean ± std: {means} "
        f"({_file(lab)}). Run: {run.named(lab)}."
    )
    short = f"{_label(lab)}: test accuracy of {repeats} draws of {size} labels per class."
    return Text(alt, caption, short)


KINDS: dict[str, Kind] = {
    "curves": Kind(("live",), load_curves, draw_curves, text_curves),
    "confusion": Kind(("evaluation",), load_confusion, draw_confusion, text_confusion),
    "misclassified": Kind(
        ("evaluation", "images"), load_misclassified, draw_misclassified, text_misclassified
    ),
    "errors": Kind(("model", "series"), load_errors, draw_errors, text_errors),
    "reconstructions": Kind(
        ("model", "series"), load_reconstructions, draw_reconstructions, text_reconstructions
    ),
    "pca": Kind(("vectors",), load_pca, draw_pca, text_pca),
    "phases": Kind(("live",), load_phases, draw_phases, text_phases),
    "draws": Kind((), load_draws, draw_draws, text_draws),
}


def figure_ids() -> list[str]:
    """Every figure as ``LAB/NAME``; its file is ``docs/figures/LAB/NAME.png``."""
    return [f"{lab}/{name}" for lab, spec in LAB_FIGURES.items() for name in spec.figures.split()]


def sources(figure: str) -> list[str]:
    """The outputs (paths from the repository root) ``figure`` is drawn from, besides
    ``metrics/`` and ``dvc.lock``."""
    lab, name = figure.split("/")
    return [LAB_FIGURES[lab].output(role) for role in KINDS[name].sources]


# --- Digests and the record -----------------------------------------------------------------------


def digest(value: Any) -> str:
    """A short SHA-256 of an array as drawn: its shape and values, floats rounded to
    :data:`SIGNIFICANT` significant digits, integers, booleans and strings exact."""
    array = np.asarray(value)
    if array.dtype.kind == "f":
        body = " ".join(f"{v:.{SIGNIFICANT}g}" for v in array.ravel().tolist()).encode()
    elif array.dtype.kind in "iub":
        body = array.astype("<i8").tobytes()
    else:
        body = "\0".join(str(v) for v in array.ravel().tolist()).encode()
    kind = "f" if array.dtype.kind == "f" else "i" if array.dtype.kind in "iub" else "s"
    return hashlib.sha256(f"{array.shape}|{kind}|".encode() + body).hexdigest()[:16]


def entry(run: Run, figure: str, drawn: Drawn) -> dict[str, Any]:
    """``figure``'s record: its file and size in pixels, the md5 ``dvc.lock`` records for its
    sources, the digests of what it draws and the facts its alt text quotes."""
    return {
        "file": f"{figure}.png",
        # The pixels matplotlib gives a figure of this size (it truncates).
        "width": int(drawn.size[0] * DPI),
        "height": int(drawn.size[1] * DPI),
        "sources": {path: run.md5(path) for path in sources(figure)},
        "drawn": {name: digest(value) for name, value in sorted(drawn.arrays.items())},
        "facts": json.loads(json.dumps(drawn.facts)),  # as the record keeps them
    }


def read_record(root: Path) -> dict[str, dict]:
    """The record's figures, ``{}`` before the first figure is drawn."""
    path = root / RECORD
    if not path.exists():
        return {}
    figures = load_json(path)
    figures = figures.get("figures") if isinstance(figures, dict) else None
    fields = {"file", "width", "height", "sources", "drawn", "facts"}
    if not isinstance(figures, dict) or not all(
        isinstance(e, dict) and fields <= set(e) for e in figures.values()
    ):
        raise DataError(f"{path}: not the record `{PROG}` writes; delete it and run the command")
    return figures


def record_text(figures: dict[str, dict]) -> str:
    """The record file's text: the figures in :func:`figure_ids` order, with what they hold."""
    about = (
        f"Written by `{PROG}`; do not edit. Per figure: the outputs it was drawn from (their md5 "
        "as dvc.lock records them), a SHA-256 of each array it draws, and the facts its alt text "
        "quotes."
    )
    tolerance = f"floats rounded to {SIGNIFICANT} significant digits; the rest exact"
    payload = {"about": about, "tolerance": tolerance, "figures": figures}
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


# --- Drawing --------------------------------------------------------------------------------------

# Type large for the figure's size: on a phone a figure 6.4 inches wide is shown about 350 pixels
# wide, and a 12.5-point tick label there is still about 8 pixels tall.
STYLE = {
    "font.size": 13,
    "axes.titlesize": 13,
    "axes.labelsize": 14,
    "xtick.labelsize": 12.5,
    "ytick.labelsize": 12.5,
    "legend.fontsize": 12.5,
    "legend.framealpha": 0.85,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2,
}
PALETTE = 96  # colours a palette PNG keeps: enough for anti-aliased lines and grey pixels


def render(figure: str, drawn: Drawn) -> bytes:
    """``figure`` as the bytes of a palette PNG, drawn with matplotlib's Agg renderer."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from PIL import Image

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=drawn.size, dpi=DPI, layout="constrained")
        KINDS[figure.split("/")[1]].draw(fig, drawn)
        drawing = io.BytesIO()
        fig.savefig(drawing, format="png", dpi=DPI)
    image = Image.open(drawing).convert("RGB")
    image = image.quantize(PALETTE, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    png = io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    return png.getvalue()


def png_size(path: Path) -> tuple[int, int] | None:
    """A PNG file's width and height, from its header; None for what is not a PNG."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def over_budget(sizes: dict[str, int]) -> list[str]:
    """The figures over :data:`MAX_FIGURE_BYTES` (``sizes``: bytes by figure), and the total
    over :data:`MAX_TOTAL_BYTES`."""
    limit = MAX_FIGURE_BYTES // 1024
    problems = [
        f"{FIGURES / figure}.png is {size / 1024:.0f} KB, over {limit} KB"
        for figure, size in sizes.items()
        if size > MAX_FIGURE_BYTES
    ]
    if sum(sizes.values()) > MAX_TOTAL_BYTES:
        total, limit = sum(sizes.values()) // 1024, MAX_TOTAL_BYTES // 1024
        problems.append(f"the figures take {total} KB, over {limit} KB")
    return problems


# --- The pages' blocks ----------------------------------------------------------------------------

END = "<!-- /figure -->"
# Markers count only at the start of a line, so that prose may quote them.
BLOCK = re.compile(
    r"^<!-- figure: (?P<figure>[a-z0-9_]+/[a-z0-9_]+)(?P<short> short)?(?:;[^\n]*)? -->\n"
    r"(?P<body>.*?)^<!-- /figure -->",
    re.S | re.M,
)
MARKERS = re.compile(r"^<!-- (?:figure:|/figure -->)", re.M)


def opener(spec: str) -> str:
    """The first line of a figure block; it names what wrote the block."""
    return (
        f"<!-- figure: {spec}; written by `{PROG}` from the run's outputs and metrics/, "
        "do not edit by hand -->"
    )


def figure_html(run: Run, figure: str, recorded: dict, page: Path, short: bool) -> str:
    """``figure`` as HTML for ``page`` (a path from the repository root): the image at its shown
    size, linked to itself for a closer look on a phone, its alt text, and its caption."""
    lab, name = figure.split("/")
    text = KINDS[name].text(run, lab, recorded["facts"])
    src = Path(os.path.relpath(FIGURES / recorded["file"], page.parent)).as_posix()
    width = round(recorded["width"] * SHOWN_PER_INCH / DPI)
    height = round(recorded["height"] * SHOWN_PER_INCH / DPI)
    alt = html.escape(text.alt, quote=False).replace('"', "&quot;")
    image = f'<img src="{src}" alt="{alt}" width="{width}" height="{height}">'
    # As wide as the image (the caption wraps to it), at most the column; in the home page's
    # gallery, as wide as its column of the grid.
    style = "" if short else f' style="width: {width}px"'
    return (
        f'<figure class="lab-figure"{style}>\n<a href="{src}">{image}</a>\n'
        f"<figcaption>{text.short if short else text.caption}</figcaption>\n</figure>"
    )


def updated(text: str, page: Path, run: Run, figures: dict[str, dict]) -> str:
    """``text``, the page at ``page`` (from the repository root), with each figure block
    rewritten from ``figures`` (the record) and the run's metrics."""
    blocks = list(BLOCK.finditer(text))
    if len(MARKERS.findall(text)) != 2 * len(blocks):
        raise ValueError(
            f"{len(MARKERS.findall(text))} markers make {len(blocks)} whole blocks; each "
            f"'<!-- figure: LAB/NAME -->' needs its '{END}', on lines of their own"
        )
    unknown = [m["figure"] for m in blocks if m["figure"] not in figures]
    if unknown:
        known = ", ".join(figure_ids())
        raise ValueError(f"no figure {unknown[0]} is drawn (known: {known})")

    def block(match: re.Match[str]) -> str:
        figure, short = match["figure"], bool(match["short"])
        body = figure_html(run, figure, figures[figure], page, short)
        return f"{opener(figure + (' short' if short else ''))}\n\n{body}\n\n{END}"

    return BLOCK.sub(block, text)


def pages(root: Path) -> dict[Path, str]:
    """The documentation's pages that hold figure blocks, with their text."""
    texts = {
        path: path.read_text(encoding="utf-8") for path in sorted((root / "docs").rglob("*.md"))
    }
    return {path: text for path, text in texts.items() if MARKERS.search(text)}


# --- The command ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Every figure compared: its record now (new where drawn, kept where not), what was drawn,
    what is stale and why, and notes for the user."""

    record: dict[str, dict] = field(default_factory=dict)
    drawn: dict[str, Drawn] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def compare(root: Path, run: Run, recorded: dict[str, dict]) -> Comparison:
    """Each figure's data, drawn from the outputs where the workspace has them, against the
    record, and the committed PNG files against the record."""
    result = Comparison()
    for figure in figure_ids():
        lab, name = figure.split("/")
        old = recorded.get(figure)
        missing = [path for path in sources(figure) if not (root / path).exists()]
        if missing and old is None:
            result.stale[figure] = f"never drawn, and {missing[0]} is not in the workspace"
            continue
        if missing:
            result.record[figure] = old
            moved = [path for path, md5 in old["sources"].items() if run.md5(path) != md5]
            result.notes.append(
                f"{figure}: not compared: {missing[0]} is not in the workspace (`dvc pull` or "
                "`make repro` brings it)"
                + (
                    f"; dvc.lock records another {', '.join(moved)} than it was drawn from"
                    if moved
                    else ""
                )
            )
        else:
            drawn = KINDS[name].load(run, lab)
            result.record[figure], result.drawn[figure] = entry(run, figure, drawn), drawn
            why = _difference(old, result.record[figure])
            if why:
                result.stale[figure] = why
            elif old["sources"] != result.record[figure]["sources"]:
                result.notes.append(
                    f"{figure}: the same data, from outputs whose md5 in dvc.lock changed "
                    f"(`{PROG}` records the new md5)"
                )
        png = root / FIGURES / f"{figure}.png"
        size = (result.record[figure]["width"], result.record[figure]["height"])
        if figure not in result.stale and not png.is_file():
            result.stale[figure] = "missing" + (
                f", and {missing[0]} is not in the workspace to draw it from" if missing else ""
            )
        elif figure not in result.stale and png_size(png) != size:
            result.stale[figure] = f"not {size[0]} by {size[1]} pixels, as recorded"
    return result


def _difference(old: dict | None, new: dict) -> str:
    """Why a figure recorded as ``old`` is stale, drawn anew as ``new``; empty if it is not."""
    if old is None:
        return "never drawn"
    changed = [name for name in new["drawn"] if old["drawn"].get(name) != new["drawn"][name]]
    changed += [name for name in old["drawn"] if name not in new["drawn"]]
    if changed:
        return f"its data differ: {', '.join(changed)}"
    if old["facts"] != new["facts"]:
        return "the facts its alt text quotes differ"
    if (old["width"], old["height"]) != (new["width"], new["height"]):
        return "its size differs"
    return ""


def orphans(root: Path) -> list[Path]:
    """PNG files under ``docs/figures/`` that no figure of :data:`LAB_FIGURES` draws."""
    known = {root / FIGURES / f"{figure}.png" for figure in figure_ids()}
    return sorted(set((root / FIGURES).rglob("*.png")) - known)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if a figure or page is stale"
    )
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="draw every figure again, stale or not (after a change to how figures are drawn)",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    if args.check and args.redraw:
        parser.error("--check changes nothing; --redraw draws: give one of them")
    try:
        run = Run.load(args.root)
        result = compare(args.root, run, read_record(args.root))
        texts = pages(args.root)
        for note in result.notes:
            print(f"doc_figures: note: {note}")
        if args.check:
            return check(args.root, run, result, texts)
        return write(args.root, run, result, texts, redraw=args.redraw)
    except (LabError, ValueError, OSError, KeyError, IndexError, TypeError) as error:
        print(f"doc_figures: error: {one_line(error)}", file=sys.stderr)
        return 2


def _rewritten(root: Path, run: Run, record: dict[str, dict], texts: dict[Path, str]) -> dict:
    """The pages whose figure blocks change, with their new text."""
    new = {}
    for path, text in texts.items():
        try:
            new[path] = updated(text, path.relative_to(root), run, record)
        except ValueError as error:
            raise ValueError(f"{path.relative_to(root).as_posix()}: {error}") from None
    return {path: text for path, text in new.items() if text != texts[path]}


def check(root: Path, run: Run, result: Comparison, texts: dict[Path, str]) -> int:
    """``--check``: 0 when every figure, its record and every block are current, else 1 with
    one line naming what is stale."""
    stale = [f"{FIGURES / figure}.png ({why})" for figure, why in result.stale.items()]
    stale += [f"{path.relative_to(root)} (no figure draws it)" for path in orphans(root)]
    changed = _rewritten(root, run, result.record, texts)
    stale += [f"{path.relative_to(root)} (its figure blocks)" for path in changed]
    files = {f: root / FIGURES / f"{f}.png" for f in figure_ids()}
    stale += over_budget({f: path.stat().st_size for f, path in files.items() if path.is_file()})
    if stale:
        print(
            f"doc_figures: error: {'; '.join(stale)}: the figures differ from the run's outputs "
            f"and metrics/; run `{PROG}` and commit docs/",
            file=sys.stderr,
        )
        return 1
    compared, total = len(result.drawn), len(figure_ids())
    not_compared = f"; {total - compared} not (see the notes)" if compared < total else ""
    print(
        f"doc_figures: {total} figures and their captions match metrics/ and dvc.lock; "
        f"{compared} compared with the outputs they draw{not_compared}"
    )
    return 0


def write(
    root: Path, run: Run, result: Comparison, texts: dict[Path, str], redraw: bool = False
) -> int:
    """Draw the stale figures (``redraw``: every figure whose outputs are in the workspace) and
    rewrite the record and the pages' blocks; all of them or, on any error, none."""
    blocked = [figure for figure in result.stale if figure not in result.drawn]
    if blocked:
        raise DataError(f"{FIGURES / blocked[0]}.png: cannot be drawn: {result.stale[blocked[0]]}")
    # A figure whose data did not change is not drawn again: another matplotlib or font would
    # rewrite every PNG for nothing.
    images = {f: render(f, result.drawn[f]) for f in (result.drawn if redraw else result.stale)}
    sizes = {
        f: (root / FIGURES / f"{f}.png").stat().st_size for f in figure_ids() if f not in images
    }
    problems = over_budget(sizes | {figure: len(png) for figure, png in images.items()})
    if problems:
        raise DataError(f"{'; '.join(problems)}: draw smaller figures in {__name__}")
    record = record_text({figure: result.record[figure] for figure in figure_ids()})
    old_record = (root / RECORD).read_text(encoding="utf-8") if (root / RECORD).exists() else None
    changed = _rewritten(root, run, result.record, texts)
    with staged_outputs() as out:
        for figure, png in images.items():
            out.file(root / FIGURES / f"{figure}.png").write_bytes(png)
        if record != old_record:
            out.file(root / RECORD).write_text(record, encoding="utf-8")
        for path, text in changed.items():
            out.file(path).write_text(text, encoding="utf-8")
    removed = orphans(root)
    for path in removed:
        path.unlink()
    written = [f"{FIGURES / figure}.png" for figure in images]
    written += [str(RECORD)] if record != old_record else []
    written += [str(path.relative_to(root)) for path in changed]
    written += [f"{path.relative_to(root)} (removed)" for path in removed]
    if written:
        print(f"doc_figures: wrote {', '.join(written)}")
    else:
        print("doc_figures: every figure and caption matches the run's outputs and metrics/")
    return 0


def start() -> None:
    """The command's start-up, before TensorFlow loads (the anomaly figures alone load it): the
    oneDNN kernels that ``dvc.yaml``'s stage commands pin, so that the autoencoder's errors are
    the evaluation's bit for bit, and TensorFlow's start-up notices kept off stderr."""
    from dllabs.training.backend import quiet_tensorflow_start

    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    quiet_tensorflow_start()


if __name__ == "__main__":
    start()
    sys.exit(main())
