"""The documentation's figures are the committed run's, drawn by a command and checked against the
run's outputs and metrics (dllabs/tooling/doc_figures.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dllabs.tooling import doc_figures
from tests.helpers.repo import REPO

PROG = doc_figures.PROG
CLASSES = ["a", "b", "c"]
# Every figure once on a lab page, and the home page's gallery of short captions.
LAB_PAGE = "".join(
    f"## {f}\n\n<!-- figure: {f} -->\n<!-- /figure -->\n\n" for f in doc_figures.figure_ids()
)
HOME_PAGE = (
    "# Home\n\n<div>\n\n"
    + "".join(
        f"<!-- figure: {f} short -->\n<!-- /figure -->\n\n" for f in ("mlp/curves", "cbow/pca")
    )
    + "</div>\n"
)


def write_tsv(path: Path, column: str, values: list[float], first_step: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{first_step + i}\t{v!r}" for i, v in enumerate(values)]
    path.write_text("\n".join([f"step\t{column}", *rows]) + "\n", encoding="utf-8")


def write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def classifier_outputs(root: Path, lab: str) -> None:
    """Six epochs of curves, and 12 test images of 3 classes of which 2 are misclassified."""
    live = root / "plots" / lab / "plots" / "metrics"
    write_tsv(live / "train" / "loss.tsv", "loss", [1.1, 0.8, 0.6, 0.5, 0.45, 0.4])
    write_tsv(live / "eval" / "loss.tsv", "loss", [1.0, 0.85, 0.7, 0.65, 0.68, 0.7])
    write_tsv(live / "train" / "accuracy.tsv", "accuracy", [0.4, 0.6, 0.7, 0.8, 0.85, 0.9])
    write_tsv(live / "eval" / "accuracy.tsv", "accuracy", [0.4, 0.55, 0.7, 0.75, 0.75, 0.7])
    actual = [0, 1, 2] * 4
    predicted = list(actual)
    predicted[1], predicted[5] = 2, 0
    pairs = [
        {"actual": CLASSES[a], "predicted": CLASSES[p]}
        for a, p in zip(actual, predicted, strict=True)
    ]
    write_json(root / "plots/evaluate" / lab / "plots/sklearn/confusion_matrix.json", pairs)
    metrics = {
        "test": {
            "n": 12,
            "accuracy": 0.833333,
            "macro_f1": 0.82,
            "per_class": {c: {} for c in CLASSES},
        },
        "model": {"best_epoch": 4, "epochs_trained": 6},
    }
    write_json(root / "metrics" / f"{lab}.json", metrics)


def anomaly_outputs(root: Path) -> None:
    """A tiny autoencoder of 2x2 rows, 10 test rows (4 normal), and its metrics."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((10, 4)).astype("float32")
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype="int8")
    labels = np.array(["0"] * 4 + ["7"] * 6)
    np.savez(
        root / "data/processed/series.npz",
        x_test=x,
        y_test=y,
        label_test=labels,
        row_shape=np.array([2, 2]),
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(4)])
    (root / "models/autoencoder").mkdir(parents=True)
    model.save(root / "models/autoencoder/model.keras")
    live = root / "plots/autoencoder/plots/metrics"
    write_tsv(live / "train" / "loss.tsv", "loss", [0.5, 0.3, 0.2, 0.15])
    write_tsv(live / "eval" / "loss.tsv", "loss", [0.5, 0.35, 0.25, 0.3])
    test = {
        "n": 10,
        "roc_auc": 0.9,
        "f1": 0.8,
        "precision": 0.8,
        "recall": 0.8,
        "confusion": {"tp": 5, "fp": 1, "tn": 3, "fn": 1},
    }
    write_json(
        root / "metrics/anomaly.json", {"threshold": 0.3, "method": "mean_std", "test": test}
    )


def cbow_outputs(root: Path) -> None:
    from gensim.models import KeyedVectors

    from dllabs.models.word2vec_files import save_vectors

    words = ["king", "queen", "man", "woman", "land", "dog"]
    vectors = KeyedVectors(3)
    vectors.add_vectors(words, np.random.default_rng(1).random((6, 3)).astype("float32"))
    for count, word in enumerate(reversed(words), start=1):
        vectors.set_vecattr(word, "count", count)
    save_vectors(vectors, root / "models/cbow/word2vec")
    write_tsv(root / "plots/cbow/plots/metrics/train/loss.tsv", "loss", [900.0, 500.0, 420.0])
    metrics = {"final_loss": 420.0, "vocab_size": 6, "wordsim353": {"spearman": 0.31, "n": 9}}
    write_json(root / "metrics/cbow.json", metrics)


def transfer_outputs(root: Path) -> None:
    live = root / "plots/transfer"
    for part in ("train", "eval"):
        write_tsv(live / f"scratch/plots/metrics/{part}/accuracy.tsv", "accuracy", [0.3, 0.5, 0.6])
    for phase, first, values in (
        ("feature_extraction", 0, [0.4, 0.7, 0.8]),
        ("fine_tune", 3, [0.85, 0.9]),
    ):
        write_tsv(
            live / f"transfer/plots/metrics/train/{phase}/accuracy.tsv", "accuracy", values, first
        )
        write_tsv(
            live / f"transfer/plots/metrics/{phase}/eval/accuracy.tsv", "accuracy", values, first
        )
    phases = {}
    for phase, accuracy in (("scratch", 0.6), ("feature_extraction", 0.8), ("fine_tune", 0.85)):
        per_repeat = {
            "0": {"accuracy": accuracy, "best_epoch": 2, "epochs": 3},
            "1": {"accuracy": accuracy - 0.1, "best_epoch": 1, "epochs": 3},
        }
        phases[phase] = {
            "accuracy": accuracy - 0.05,
            "accuracy_std": 0.07,
            "n": 20,
            "ci95": {"accuracy": {"low": accuracy - 0.3, "high": 1.0}},
            "per_repeat": per_repeat,
        }
    write_json(root / "metrics/transfer.json", {"target_train_size": 2, "repeats": 2, **phases})


def dvc_files(root: Path) -> None:
    """dvc.yaml declaring the metrics, and dvc.lock recording the params and the outputs."""
    metrics = [{f"metrics/{lab}.json": {"cache": False}} for lab in doc_figures.LAB_FIGURES]
    (root / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"evaluate": {"cmd": "true", "metrics": metrics}}}),
        encoding="utf-8",
    )
    params = {
        "base": {"seed": 1},
        "data.images": "digits",
        "data.anomaly": "digits",
        "data.normal_label": None,
        "data.text": "lee",
        "mlp": {"hidden_units": [8], "optimizer": "sgd", "learning_rate": 0.1, "epochs": 6},
        "cnn": {"filters": [4], "optimizer": "adam", "learning_rate": 0.01, "epochs": 6},
        "autoencoder": {"hidden_units": [], "code_size": 2, "loss": "mae"},
        "anomaly.threshold_method": "mean_std",
        "cbow": {"vector_size": 3, "window": 2, "negative": 5, "epochs": 3, "pca_words": 5},
        "transfer": {
            "base": "pipeline",
            "target_train_size": 2,
            "repeats": 2,
            "trainable_base_layers": 0,
            "fine_tune": {"unfreeze": 2},
        },
    }
    outputs = [
        "plots/mlp",
        "plots/cnn",
        "plots/evaluate/mlp",
        "plots/evaluate/cnn",
        "data/processed/images",
        "data/processed/series.npz",
        "plots/autoencoder",
        "models/autoencoder",
        "plots/cbow",
        "models/cbow",
        "plots/transfer",
    ]
    outs = [{"path": path, "md5": f"{i:032x}"} for i, path in enumerate(outputs)]
    lock = {"schema": "2.0", "stages": {"train": {"params": {"params.yaml": params}, "outs": outs}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock), encoding="utf-8")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run's outputs, metrics, dvc.yaml and dvc.lock, and pages with a block for each figure."""
    root = tmp_path_factory.mktemp("run")
    (root / "data/processed/images").mkdir(parents=True)
    images = np.arange(12 * 16, dtype=np.uint8).reshape(12, 4, 4, 1)
    np.save(root / "data/processed/images/x_test.npy", images)
    for lab in ("mlp", "cnn"):
        classifier_outputs(root, lab)
    anomaly_outputs(root)
    cbow_outputs(root)
    transfer_outputs(root)
    dvc_files(root)
    (root / "docs/labs").mkdir(parents=True)
    (root / "docs/labs/all.md").write_text(f"# Every figure\n\n{LAB_PAGE}", encoding="utf-8")
    (root / "docs/index.md").write_text(HOME_PAGE, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def drawn_run(fake_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake run with its figures drawn (once: drawing them all takes seconds)."""
    root = shutil.copytree(fake_run, tmp_path_factory.mktemp("drawn") / "run")
    assert doc_figures.main(["--root", str(root)]) == 0
    return root


@pytest.fixture
def run(drawn_run: Path, tmp_path: Path) -> Path:
    """A copy of the fake run, its figures drawn, for one test to change."""
    return shutil.copytree(drawn_run, tmp_path / "run")


def check(root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = doc_figures.main(["--check", "--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files(root: Path) -> dict[str, bytes]:
    """Every file under docs/, by path: what a failed command must leave as it was."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / "docs").rglob("*")
        if p.is_file()
    }


def test_the_drawn_figures_pass_the_check_are_small_and_each_has_alt_text_and_a_caption(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = check(run, capsys)
    assert code == 0, err
    assert "13 compared with the outputs they draw" in out
    sizes = {
        f: (run / "docs/figures" / f"{f}.png").stat().st_size for f in doc_figures.figure_ids()
    }
    assert all(0 < size <= doc_figures.MAX_FIGURE_BYTES for size in sizes.values()), sizes
    assert sum(sizes.values()) <= doc_figures.MAX_TOTAL_BYTES
    page = (run / "docs/labs/all.md").read_text(encoding="utf-8")
    html = r'<img src="([^"]+)" alt="([^"]+)" width="(\d+)" height="(\d+)"></a>\n<figcaption>(.+)<'
    figures = re.findall(html, page)
    assert len(figures) == len(doc_figures.figure_ids())
    for src, alt, width, height, caption in figures:
        png = (run / "docs/labs" / src).resolve()
        shown = np.array(doc_figures.png_size(png)) * doc_figures.SHOWN_PER_INCH / doc_figures.DPI
        assert np.allclose(shown, (int(width), int(height)), atol=1), src
        assert len(alt) > 60 and alt != caption, src  # says what it shows, in words of its own
        assert "Run: <code>" in caption and "metrics/" in caption, caption
    home = (run / "docs/index.md").read_text(encoding="utf-8")
    assert home.count('<figure class="lab-figure">') == 2 and 'src="figures/mlp/curves.png"' in home
    # The captions quote metrics/ and the params dvc.lock records for the run.
    assert "test accuracy 0.8333 (n 12; metrics/mlp.json)" in page
    assert (
        "<code>mlp.learning_rate=0.1</code>" in page
        and "<code>data.normal_label=null</code>" in page
    )


def test_writing_again_changes_nothing(run: Path, capsys: pytest.CaptureFixture) -> None:
    before = files(run)
    assert doc_figures.main(["--root", str(run)]) == 0
    assert "every figure and caption matches" in capsys.readouterr().out
    assert files(run) == before


def test_a_changed_metric_fails_the_check_naming_the_page_and_the_command(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    path = run / "metrics/cnn.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["test"]["accuracy"] = 0.916667
    path.write_text(json.dumps(metrics), encoding="utf-8")
    code, _, err = check(run, capsys)
    assert code == 1
    assert err.count("\n") == 1 and "docs/labs/all.md (its figure blocks)" in err
    assert f"run `{PROG}`" in err
    assert doc_figures.main(["--root", str(run)]) == 0
    assert check(run, capsys)[0] == 0
    assert "accuracy 0.9167" in (run / "docs/labs/all.md").read_text(encoding="utf-8")


def test_a_metric_a_figure_draws_makes_the_figure_stale(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    path = run / "metrics/mlp.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["model"]["best_epoch"] = 5  # the epoch the curves mark
    path.write_text(json.dumps(metrics), encoding="utf-8")
    code, _, err = check(run, capsys)
    assert code == 1 and "docs/figures/mlp/curves.png (its data differ: best epoch)" in err


def test_a_changed_curve_fails_the_check_until_the_figure_is_drawn_again(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    png = run / "docs/figures/cnn/curves.png"
    old = png.read_bytes()
    write_tsv(
        run / "plots/cnn/plots/metrics/eval/loss.tsv", "loss", [1.0, 0.8, 0.7, 0.65, 0.6, 0.7]
    )
    code, _, err = check(run, capsys)
    assert code == 1
    assert "docs/figures/cnn/curves.png (its data differ: loss/eval)" in err and PROG in err
    assert doc_figures.main(["--root", str(run)]) == 0
    assert png.read_bytes() != old
    assert check(run, capsys)[0] == 0


def test_what_is_compared_is_the_data_within_its_tolerance_not_the_png_bytes(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    # A change in the 9th significant digit is below what any figure shows.
    write_tsv(
        run / "plots/mlp/plots/metrics/eval/loss.tsv",
        "loss",
        [1.000000001, 0.85, 0.7, 0.65, 0.68, 0.7],
    )
    # Another encoder's bytes for the same picture (another matplotlib, another font).
    from PIL import Image

    png = run / "docs/figures/mlp/curves.png"
    Image.open(png).convert("RGB").save(png, format="PNG", compress_level=1)
    code, _, err = check(run, capsys)
    assert code == 0, err


def test_without_the_outputs_the_captions_are_still_checked(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    """A clone before `make repro`: nothing to draw from, but the figures and captions are
    checked against metrics/ and the record, and the check says what it could not compare."""
    for folder in ("plots", "models", "data"):
        shutil.rmtree(run / folder)
    code, out, err = check(run, capsys)
    assert code == 0, err
    assert "1 compared with the outputs they draw; 12 not" in out  # draws: metrics alone
    assert "mlp/curves: not compared: plots/mlp is not in the workspace" in out
    lock = (run / "dvc.lock").read_text(encoding="utf-8")
    (run / "dvc.lock").write_text(lock.replace("0" * 32, "f" * 32), encoding="utf-8")
    assert "dvc.lock records another plots/mlp than it was drawn from" in check(run, capsys)[1]
    path = run / "metrics/anomaly.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["threshold"] = 0.25
    path.write_text(json.dumps(metrics), encoding="utf-8")
    code, _, err = check(run, capsys)
    assert code == 1 and "docs/labs/all.md (its figure blocks)" in err
    # Drawing needs the outputs: one line, nothing written.
    before = files(run)
    assert doc_figures.main(["--root", str(run), "--redraw"]) == 0  # captions only
    assert files(run) != before and "0.25" in (run / "docs/labs/all.md").read_text("utf-8")
    (run / "docs/figures/cbow/pca.png").unlink()
    before = files(run)
    assert doc_figures.main(["--root", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("doc_figures: error: docs/figures/cbow/pca.png: cannot be drawn")
    assert "models/cbow/word2vec is not in the workspace" in err
    assert files(run) == before


def test_a_missing_or_resized_figure_file_is_stale(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    (run / "docs/figures/transfer/draws.png").unlink()
    shutil.copy(run / "docs/figures/mlp/misclassified.png", run / "docs/figures/cnn/curves.png")
    shutil.copy(run / "docs/figures/mlp/curves.png", run / "docs/figures/mlp/extra.png")
    code, _, err = check(run, capsys)
    assert code == 1
    assert "docs/figures/transfer/draws.png (missing)" in err
    assert "docs/figures/cnn/curves.png (not 960 by" in err
    assert "docs/figures/mlp/extra.png (no figure draws it)" in err
    assert doc_figures.main(["--root", str(run)]) == 0
    assert not (run / "docs/figures/mlp/extra.png").exists()
    assert check(run, capsys)[0] == 0


def break_tsv(root: Path) -> None:
    path = root / "plots/mlp/plots/metrics/train/loss.tsv"
    path.write_text("step\tloss\n0\t1.0\n1\tabc\n", encoding="utf-8")


def break_confusion(root: Path) -> None:
    write_json(root / "plots/evaluate/cnn/plots/sklearn/confusion_matrix.json", [{"actual": "z"}])


def short_images(root: Path) -> None:
    np.save(root / "data/processed/images/x_test.npy", np.zeros((5, 4, 4, 1), np.uint8))


def break_model(root: Path) -> None:
    (root / "models/autoencoder/model.keras").write_bytes(b"not a zip")


def unknown_figure(root: Path) -> None:
    with (root / "docs/index.md").open("a", encoding="utf-8") as page:
        page.write("\n<!-- figure: mlp/loss -->\n<!-- /figure -->\n")


def unclosed_block(root: Path) -> None:
    with (root / "docs/index.md").open("a", encoding="utf-8") as page:
        page.write("\n<!-- figure: mlp/curves -->\n")


def no_lock(root: Path) -> None:
    (root / "dvc.lock").unlink()


def missing_param(root: Path) -> None:
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    del lock["stages"]["train"]["params"]["params.yaml"]["cbow"]
    (root / "dvc.lock").write_text(yaml.safe_dump(lock), encoding="utf-8")


def missing_metric(root: Path) -> None:
    write_json(root / "metrics/cbow.json", {"final_loss": 1.0})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (break_tsv, "plots/mlp/plots/metrics/train/loss.tsv: line 3: expected a step and a number"),
        (break_confusion, "confusion_matrix.json: expected a list of {'actual', 'predicted'}"),
        (short_images, "x_test.npy: images of shape (5, 4, 4, 1); expected the 12 test images"),
        (break_model, "model.keras: truncated or not a Keras file"),
        (unknown_figure, "docs/index.md: no figure mlp/loss is drawn"),
        (unclosed_block, "docs/index.md: 5 markers make 2 whole blocks"),
        (no_lock, "dvc.lock: not found"),
        (missing_param, "dvc.lock: no stage records the param cbow"),
        (missing_metric, "metrics/cbow.json: no "),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(
    run: Path, capsys: pytest.CaptureFixture, damage, message: str
) -> None:
    damage(run)
    write_tsv(run / "plots/cnn/plots/metrics/eval/loss.tsv", "loss", [9.0] * 6)  # a stale figure
    before = files(run)
    for args in ([], ["--check"]):
        assert doc_figures.main([*args, "--root", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("doc_figures: error: ") and err.count("\n") == 1, err
        assert message in err, err
        assert files(run) == before


def test_figures_over_the_size_budget_are_refused_whole(
    fake_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(fake_run, tmp_path / "run")
    monkeypatch.setattr(doc_figures, "MAX_FIGURE_BYTES", 4096)
    assert doc_figures.main(["--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "docs/figures/mlp/curves.png is" in err and "over 4 KB" in err
    assert not (root / "docs/figures").exists()  # not one figure of the set


def test_every_lab_page_and_the_home_page_show_figures_with_alt_text() -> None:
    """The committed pages: each lab's page shows its figures, the home page one of each lab."""
    docs = REPO / "docs"
    for lab, spec in doc_figures.LAB_FIGURES.items():
        page = (docs / "labs" / f"{lab}.md").read_text(encoding="utf-8")
        for name in spec.figures.split():
            assert doc_figures.opener(f"{lab}/{name}") in page, (lab, name)
    home = (docs / "index.md").read_text(encoding="utf-8")
    shown = re.findall(r"^<!-- figure: ([a-z]+)/[a-z]+ short;", home, re.M)
    assert sorted(shown) == sorted(doc_figures.LAB_FIGURES)
    for page in [docs / "index.md", *sorted((docs / "labs").glob("*.md"))]:
        for alt in re.findall(r'<img src="[^"]+" alt="([^"]*)"', page.read_text(encoding="utf-8")):
            assert len(alt) > 60, (page.name, alt)


def committed_docs(dest: Path) -> Path:
    """The committed docs/, dvc.yaml, dvc.lock and metrics/ (as test_result_tables takes them:
    a `dvc repro` before the tests rewrites the workspace's metrics' training times)."""
    sources = ["docs", "dvc.yaml", "dvc.lock", "metrics"]
    archive = subprocess.run(
        ["git", "archive", "HEAD", *sources], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def test_the_committed_figures_are_within_their_size_budget() -> None:
    sizes = [path.stat().st_size for path in (REPO / "docs/figures").rglob("*.png")]
    assert len(sizes) == len(doc_figures.figure_ids())
    assert max(sizes) <= doc_figures.MAX_FIGURE_BYTES
    assert sum(sizes) <= doc_figures.MAX_TOTAL_BYTES


def test_the_committed_docs_pass_the_check_on_a_clone_without_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """What `make docs` checks in CI before any `dvc repro`: the captions against metrics/."""
    root = committed_docs(tmp_path)
    code, out, err = check(root, capsys)
    assert code == 0, err
    assert "not compared" in out


def test_the_committed_figures_match_the_committed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Fails after a `dvc repro` whose outputs changed while docs/figures/ was not redrawn
    (`python -m dllabs.tooling.doc_figures`)."""
    missing = sorted(
        {
            p
            for f in doc_figures.figure_ids()
            for p in doc_figures.sources(f)
            if not (REPO / p).exists()
        }
    )
    if missing:
        pytest.skip(
            f"the run's outputs are not in the workspace ({missing[0]}; a clone before "
            "`make repro` or `dvc pull`): the figures cannot be compared with them"
        )
    root = committed_docs(tmp_path)
    for top in ("plots", "models", "data"):
        (root / top).symlink_to(REPO / top)
    # As `make docs` runs it: a process of its own starts TensorFlow with the stages' kernels.
    checked = subprocess.run(
        [sys.executable, "-m", "dllabs.tooling.doc_figures", "--check", "--root", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"{len(doc_figures.figure_ids())} compared with the outputs they draw" in checked.stdout
