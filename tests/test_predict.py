"""`dl-labs predict`: each lab on known inputs, any revision, and one line for each bad input.

The models are the quick reproduction's (one epoch each, `reproduced_baseline`): what is under
test is that new data reaches them exactly as `preprocess` prepared their training data, not
their accuracy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from dllabs.labs.anomaly import reconstruction_errors
from dllabs.labs.registry import LABS
from dllabs.models.inputs import image_record
from dllabs.models.word2vec_files import load_word2vec
from dllabs.outputs import save_json
from dllabs.prediction import command as predict_command
from dllabs.prediction.batches import Predictor
from tests.helpers.data import png_header_only
from tests.helpers.repo import DVC, REPO, commit_all, copy_of, sh
from tests.helpers.stages import outcome


@pytest.fixture(scope="module")
def repo(reproduced_baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the quick reproduction (its models, data and git history)."""
    return copy_of(reproduced_baseline, tmp_path_factory.mktemp("predict"))


@pytest.fixture
def run(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``run(*argv)`` -> ``(exit status, stdout, stderr)`` of `dl-labs predict` in ``repo``."""
    monkeypatch.chdir(repo)

    def call(*argv: str) -> tuple[int, str, str]:
        return outcome(predict_command.main, list(argv), capsys)

    return call


def split_images(repo: Path, count: int = 12) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(repo / "data/processed/images/x_test.npy")[:count]
    y = np.load(repo / "data/processed/images/y_test.npy")[:count]
    return x, y


def write_pngs(x: np.ndarray, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(x):
        paths.append(folder / f"img_{i:02d}.png")
        Image.fromarray(image[..., 0], "L").save(paths[-1])
    return paths


def model_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    return keras.saving.load_model(path).predict(x, verbose=0)


@pytest.mark.parametrize("lab", ["mlp", "cnn"])
@pytest.mark.slow
def test_image_files_are_predicted_as_the_model_predicts_its_test_arrays(
    lab: str, repo: Path, run, tmp_path: Path
) -> None:
    x, _ = split_images(repo)
    write_pngs(x, tmp_path / "pngs")
    expected = model_probabilities(repo / f"models/{lab}/model.keras", x)
    names = json.loads((repo / "data/processed/images.json").read_text())["class_names"]

    status, out, err = run(lab, str(tmp_path / "pngs"), "--json", "--top", "3")
    assert status == 0, err
    results = json.loads(out)
    assert [Path(r["input"]).name for r in results] == [f"img_{i:02d}.png" for i in range(len(x))]
    for result, p in zip(results, expected, strict=True):
        ranked = np.argsort(-p, kind="stable")[:3]
        assert [e["class"] for e in result["predictions"]] == [names[k] for k in ranked]
        got = [e["probability"] for e in result["predictions"]]
        assert got == pytest.approx(p[ranked], abs=1e-5)

    # The same images as a .npy array, and picked by a glob pattern: the same answers.
    np.save(tmp_path / "x.npy", x)
    status, out, _ = run(lab, str(tmp_path / "x.npy"), "--json", "--top", "3")
    assert [r["predictions"] for r in json.loads(out)] == [r["predictions"] for r in results]
    status, out, _ = run(lab, str(tmp_path / "pngs" / "img_0[0-4].png"), "--csv", "--top", "1")
    rows = out.splitlines()
    assert rows[0] == "input,rank,class,probability" and len(rows) == 1 + 5
    assert rows[1].split(",")[2] == results[0]["predictions"][0]["class"]


@pytest.mark.slow
def test_the_table_lists_the_top_classes_of_each_image(repo: Path, run, tmp_path: Path) -> None:
    x, _ = split_images(repo, 2)
    write_pngs(x, tmp_path)
    status, out, _ = run("cnn", str(tmp_path), "--top", "2")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["input", "rank", "class", "probability"]
    assert len(lines) == 1 + 2 * 2 and [line.split()[1] for line in lines[1:]] == ["1", "2"] * 2


@pytest.mark.slow
def test_images_of_another_size_and_mode_are_converted_as_the_model_was_trained(
    run, tmp_path: Path
) -> None:
    """A model recorded as 16x12 RGB gets a 40x30 greyscale-palette PNG resized bilinearly to
    16x12 and converted to RGB, as preprocess would have; its probabilities say so."""
    inputs = keras.Input((16, 12, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    folder = tmp_path / "model"
    folder.mkdir()
    model.save(folder / "model.keras")
    save_json(folder / "summary.json", {"inputs": image_record((16, 12, 3), ["a", "b", "c"])})
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L").convert("P")
    photo.save(tmp_path / "photo.png")

    status, out, err = run(
        "cnn", str(tmp_path / "photo.png"), "--model", str(folder), "--json", "--top", "3"
    )
    assert status == 0, err
    expected_pixels = np.asarray(
        photo.convert("RGB").resize((12, 16), Image.Resampling.BILINEAR), dtype=np.uint8
    )
    p = model.predict(expected_pixels[np.newaxis], verbose=0)[0]
    got = {e["class"]: e["probability"] for e in json.loads(out)[0]["predictions"]}
    assert got == pytest.approx(dict(zip("abc", p.tolist(), strict=True)), abs=1e-5)


@pytest.mark.slow
def test_transfer_predicts_with_the_chosen_variant_and_draw(repo: Path, run, tmp_path: Path):
    x, _ = split_images(repo, 4)
    write_pngs(x, tmp_path)
    summary = json.loads((repo / "models/transfer/summary.json").read_text())
    for variant in ("scratch", "fine_tune"):
        expected = model_probabilities(repo / f"models/transfer/repeat_0/{variant}.keras", x)
        status, out, err = run(
            "transfer", str(tmp_path), "--variant", variant, "--json", "--top", "1"
        )
        assert status == 0, err
        assert f"transfer model: repeat 0 of 1, {variant}" in err
        classes = [r["predictions"][0]["class"] for r in json.loads(out)]
        assert classes == [summary["classes"][k] for k in expected.argmax(axis=1)]
    status, _, err = run("transfer", str(tmp_path), "--repeat", "3")
    assert status == 1 and "--repeat 3: models/transfer holds draws 0 to 0" in err


def digit_rows(repo: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """The anomaly test rows (scaled), their flags, and the scale preprocess divided by."""
    series = np.load(repo / "data/processed/series.npz")
    scaling = json.loads((repo / "data/processed/series.json").read_text())["scaling"]
    assert scaling["method"] == "minmax" and scaling["shift"] == 0.0
    return series["x_test"][:20], series["y_test"][:20], scaling["scale"]


@pytest.mark.slow
def test_anomaly_rows_are_scaled_as_in_training_and_flagged_at_the_saved_threshold(
    repo: Path, run, tmp_path: Path
) -> None:
    x, y, scale = digit_rows(repo)
    raw = np.round(x * scale).astype(int)  # back to the digits' 0..16 pixel values
    header = ",".join(f"p{i}" for i in range(64))
    np.savetxt(tmp_path / "rows.csv", raw, fmt="%d", delimiter=",", header=header, comments="")
    model = keras.saving.load_model(repo / "models/autoencoder/model.keras")
    loss = json.loads((repo / "models/autoencoder/summary.json").read_text())["inputs"]["error"]
    errors = reconstruction_errors(x, model.predict(x, verbose=0), loss)
    threshold = json.loads((repo / "models/anomaly_threshold.json").read_text())["threshold"]

    status, out, err = run("anomaly", str(tmp_path / "rows.csv"), "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert [r["row"] for r in rows] == list(range(1, 21))
    assert [r["error"] for r in rows] == pytest.approx(errors, abs=1e-5)
    assert [r["anomaly"] for r in rows] == [bool(e > threshold) for e in errors]
    assert f"rows above the threshold {threshold:.6g}" in err

    # A UCR file: whitespace-separated, no header, the label first.
    ucr = np.column_stack([y, raw])
    np.savetxt(tmp_path / "rows.txt", ucr, fmt="%d", delimiter="  ")
    status, out, err = run("anomaly", str(tmp_path / "rows.txt"), "--label-column", "0", "--csv")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "row,error,threshold,anomaly,label"
    assert [line.split(",")[4] for line in lines[1:]] == [str(v) for v in y]
    assert [float(line.split(",")[1]) for line in lines[1:]] == pytest.approx(errors, abs=1e-5)


@pytest.mark.slow
def test_cbow_answers_queries_and_reports_unknown_words(repo: Path, run) -> None:
    model = load_word2vec(repo / "models/cbow/word2vec")
    known = model.wv.index_to_key[:3]
    status, out, err = run(
        "cbow",
        "--similar",
        known[0],
        "zzzunknown",
        "--context",
        *known,
        "qqq",
        "--analogy",
        f"{known[0]} - {known[1]} + {known[2]}",
        "--top",
        "4",
        "--json",
    )
    assert status == 0, err
    rows = json.loads(out)
    similar = [(r["word"], r["score"]) for r in rows if r["query"] == f"similar {known[0]}"]
    expected = model.wv.most_similar(known[0], topn=4)
    assert [w for w, _ in similar] == [w for w, _ in expected]
    assert [s for _, s in similar] == pytest.approx([s for _, s in expected], abs=1e-6)
    unknown = [r for r in rows if r["query"] == "similar zzzunknown"]
    assert len(unknown) == 1 and unknown[0]["note"] == "not in the vocabulary: zzzunknown"
    context = [r for r in rows if r["query"].startswith("context ")]
    centre = model.predict_output_word(known, topn=4)
    assert [r["word"] for r in context] == [w for w, _ in centre]
    assert all(r["note"] == "not in the vocabulary: qqq" for r in context)
    analogy = [r["word"] for r in rows if r["query"].startswith("analogy ")]
    positive, negative = [known[0], known[2]], [known[1]]
    assert analogy == [w for w, _ in model.wv.most_similar(positive, negative, topn=4)]

    status, out, _ = run("cbow", "--analogy", "king - zzzqueen")
    assert status == 0 and "not in the vocabulary: zzzqueen" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mlp", "{tmp}/missing.png"], "{tmp}/missing.png: not found"),
        (["mlp", "{tmp}/broken.png"], "{tmp}/broken.png: unreadable image"),
        (["mlp", "{tmp}/empty"], "{tmp}/empty: folder holds no images"),
        (["cnn", "{tmp}/*.jpg"], "{tmp}/*.jpg: no file matches the pattern"),
        (
            ["cnn", "{tmp}/wrong.npy"],
            "{tmp}/wrong.npy: images of shape (28, 28, 1), the model takes (8, 8, 1)",
        ),
        (["anomaly", "{tmp}/short.csv"], "{tmp}/short.csv: 63 columns, the model takes 64"),
        (
            ["anomaly", "{tmp}/labelled.csv"],
            "{tmp}/labelled.csv: 65 columns, the model takes 64 features; pass --label-column",
        ),
        (["anomaly", "{tmp}/text.csv"], "{tmp}/text.csv: row 2, column '63': expected a number"),
        (["anomaly", "{tmp}/missing.csv"], "{tmp}/missing.csv: not found"),
        (
            ["mlp", "{tmp}/broken.png", "--model", "{tmp}/never"],
            "{tmp}/never/summary.json: not found",
        ),
        (
            ["cbow", "--similar", "a", "--model", "{tmp}/never"],
            "{tmp}/never: no model.json; run the CBOW lab",
        ),
        (["cbow"], "predict cbow: give --similar, --context or --analogy"),
        (["mlp", "{tmp}/broken.png", "--top", "0"], "--top 0: expected 1 or more"),
        (["mlp", "{tmp}/bomb.png"], "{tmp}/bomb.png: Image size (400000000 pixels) exceeds limit"),
        (
            ["mlp", "{tmp}/broken.png", "--model", "{tmp}/cut"],
            "{tmp}/cut/model.keras: truncated or not a Keras file",
        ),
        (
            ["anomaly", "{tmp}/short.csv", "--threshold", "{tmp}/nan.json"],
            "{tmp}/nan.json: threshold nan, expected a finite number",
        ),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_naming_it(argv, message, run, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    png_header_only(tmp_path / "bomb.png", 20000, 20000)
    (tmp_path / "cut").mkdir()
    save_json(
        tmp_path / "cut" / "summary.json", {"inputs": image_record((8, 8, 1), list("0123456789"))}
    )
    (tmp_path / "cut" / "model.keras").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    save_json(tmp_path / "nan.json", {"threshold": float("nan")})
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "wrong.npy", np.zeros((2, 28, 28, 1), np.uint8))
    np.savetxt(tmp_path / "short.csv", np.ones((3, 63)), delimiter=",")
    np.savetxt(tmp_path / "labelled.csv", np.ones((3, 65)), delimiter=",")
    (tmp_path / "text.csv").write_text("1," * 63 + "1\n" + "1," * 63 + "x\n")  # 64 columns
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status, out, err = run(*argv)
    assert status == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predict: error: ")
    assert message.replace("{tmp}", str(tmp_path)) in lines[0]


@pytest.mark.slow
def test_a_model_never_built_is_named(repo: Path, run, tmp_path: Path) -> None:
    x, _ = split_images(repo, 1)
    write_pngs(x, tmp_path)
    folder = tmp_path / "half"
    folder.mkdir()
    save_json(folder / "summary.json", {"inputs": image_record((8, 8, 1), list("0123456789"))})
    status, _, err = run("mlp", str(tmp_path / "img_00.png"), "--model", str(folder))
    assert status == 1 and f"{folder}/model.keras: not found" in err


@pytest.mark.parametrize("lab", ["cnn", "transfer"])
@pytest.mark.slow
def test_a_model_trained_before_inputs_were_recorded_is_named(
    lab: str, repo: Path, run, tmp_path: Path
) -> None:
    x, _ = split_images(repo, 1)
    write_pngs(x, tmp_path / "images")
    folder = tmp_path / lab
    shutil.copytree(repo / "models" / lab, folder)
    summary = json.loads((folder / "summary.json").read_text())
    del summary["inputs"]
    save_json(folder / "summary.json", summary)
    status, out, err = run(lab, str(tmp_path / "images"), "--model", str(folder))
    assert status == 1 and out == ""
    assert f"{folder}/summary.json: no record of the model's images inputs" in err
    assert "run dvc repro" in err


@pytest.fixture(scope="module")
def two_commits(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy with a second commit whose MLP trained at another learning rate, and an
    experiment at a third; the first commit's models stay only in git and the DVC cache."""
    root = copy_of(repo, tmp_path_factory.mktemp("revisions"))
    sh(["git", "tag", "first"], root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mlp"]["learning_rate"] = 0.05
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    sh([*DVC, "repro", "train_mlp"], root)
    commit_all(root, "a faster MLP")
    sh(
        [
            *DVC,
            "exp",
            "run",
            "--temp",
            "-n",
            "slow-mlp",
            "-S",
            "mlp.learning_rate=0.001",
            "train_mlp",
        ],
        root,
        timeout=600,
    )
    return root


@pytest.mark.slow
def test_rev_reads_another_revisions_model_without_touching_the_workspace(
    two_commits: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.chdir(two_commits)
    x, _ = split_images(two_commits, 6)
    write_pngs(x, tmp_path)
    model_bytes = (two_commits / "models/mlp/model.keras").read_bytes()

    def top1(*extra: str) -> list[list[dict]]:
        predict_command.main(["mlp", str(tmp_path), "--json", "--top", "10", *extra])
        return [r["predictions"] for r in json.loads(capsys.readouterr().out)]

    now, first, experiment = top1(), top1("--rev", "first"), top1("--rev", "slow-mlp")
    assert now == top1("--rev", "HEAD")
    assert first != now and experiment not in (now, first)
    sh(["git", "stash", "-u"], two_commits)  # the first commit's own models, from git and cache
    sh(["git", "checkout", "-q", "first"], two_commits)
    sh([*DVC, "checkout"], two_commits)
    assert first == top1()
    sh(["git", "checkout", "-q", "-"], two_commits)
    sh([*DVC, "checkout"], two_commits)
    assert (two_commits / "models/mlp/model.keras").read_bytes() == model_bytes
    assert sh(["git", "status", "--porcelain"], two_commits).stdout == ""


@pytest.mark.slow
def test_rev_errors_name_the_revision(two_commits: Path, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(two_commits)
    shutil.copy(two_commits / "examples/digits/digit_0.png", tmp_path)
    for rev, message in (
        ("no-such-rev", "--rev no-such-rev: not a commit, branch, tag or experiment"),
        # The copied files before the quick repro: dvc.lock names the full-size models, whose
        # data this copy's cache never held and it has no remote to fetch them from.
        ("first~1", "models/mlp at first~1: not in the local DVC cache or the remote"),
    ):
        with pytest.raises(SystemExit):
            predict_command.main(["mlp", str(tmp_path), "--rev", rev])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


def readme_block(heading: str) -> str:
    """The first ```bash block under ``heading`` in the docs' predictions guide
    (docs/guides/predictions.md), the heading matched at any level: "## Predictions" is the
    page's title there."""
    page = (REPO / "docs/guides/predictions.md").read_text(encoding="utf-8")
    title = re.escape(heading.lstrip("#").strip())
    match = re.search(rf"^#+ {title}\n.*?```bash\n(.*?)```", page, re.S | re.M)
    assert match, f"docs/guides/predictions.md: no bash block under a heading {heading!r}"
    return match.group(1)


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """`git tag -a` needs an identity, which a CI machine may not have configured."""
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@t")


@pytest.mark.slow
def test_readme_predict_examples_run_as_written(repo: Path) -> None:
    out = sh(f"set -euo pipefail\n{readme_block('## Predictions')}", repo, timeout=300).stdout
    assert out.count("examples/digits/digit_") >= 10 + 5 * 3 + 10
    assert '"predictions": [' in out and "input,rank,class,probability" in out
    assert "row  error     threshold  anomaly  label" in out
    assert "similar president" in out and "context prime minister" in out


@pytest.mark.long
def test_readme_registry_recipe_fetches_models_by_name_and_by_experiment(
    repo: Path, tmp_path: Path, git_identity: None
) -> None:
    root = copy_of(repo, tmp_path / "registry")
    recipe = readme_block("## The model registry")
    out = sh(f"set -euo pipefail\n{recipe}", root, timeout=600).stdout
    experiment = (root / "cnn-batch32/model.keras").read_bytes()
    assert experiment != (root / "models/cnn/model.keras").read_bytes()  # not the workspace's
    assert (root / "registry/cnn/model.keras").read_bytes() == experiment  # registered, fetched
    assert (root / "registry/cnn/summary.json").is_file()
    sha = sh(["git", "rev-parse", "batch32"], root).stdout.strip()
    assert f"'rev': '{sha}', 'path': 'models/cnn'" in out
    assert out.count("examples/digits/digit_") == 3 * 10
    assert sh(["git", "status", "--porcelain", "models", "params.yaml"], root).stdout == ""


@pytest.mark.slow
def test_every_trained_model_is_an_artifact_that_dvc_artifacts_get_returns(
    repo: Path, tmp_path: Path, git_identity: None
) -> None:
    """Each artifact is a stage output; registered as a version, `dvc artifacts get` returns it
    byte for byte, and predict's default model paths are the artifacts' paths."""
    root = copy_of(repo, tmp_path / "artifacts")
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    artifacts = dvc_yaml["artifacts"]
    outs = {str(o) for stage in dvc_yaml["stages"].values() for o in stage.get("outs", [])}
    assert {a["path"] for a in artifacts.values()} <= outs
    assert {lab.model for lab in LABS.values()} | {predict_command.THRESHOLD_PATH} <= {
        a["path"] for a in artifacts.values()
    }
    for name, artifact in artifacts.items():
        assert artifact["type"] == "model" and artifact["desc"] and artifact["labels"]
        sh(["git", "tag", "-a", f"{name}@v0.1.0", "-m", name], root)
        sh([*DVC, "artifacts", "get", ".", name, "--rev", "v0.1.0", "-o", f"got/{name}"], root)
        source, fetched = root / artifact["path"], root / "got" / name
        files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
        if source.is_file():
            assert fetched.read_bytes() == source.read_bytes()
        else:
            assert files and files == sorted(
                p.relative_to(fetched) for p in fetched.rglob("*") if p.is_file()
            )
            assert all((fetched / f).read_bytes() == (source / f).read_bytes() for f in files)


def test_batches_after_a_full_one_are_padded_and_the_padding_dropped() -> None:
    """One traced shape for any number of rows past a batch; fewer rows go as they are."""

    class Recorder:
        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
            self.shapes.append(x.shape)
            return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    x = np.arange(600 * 4, dtype=np.float32).reshape(600, 2, 2)
    model = Recorder()
    out = Predictor(model, batch_size=256)(x)
    assert [s[0] for s in model.shapes] == [256, 256, 256]
    assert out.shape == (600, 1) and np.array_equal(out[:, 0], x.reshape(600, -1).sum(axis=1))
    model.shapes.clear()
    assert Predictor(model, batch_size=256)(x[:5]).shape == (5, 1)
    assert [s[0] for s in model.shapes] == [5]


def test_batches_split_over_devices_are_padded_to_a_multiple_of_them() -> None:
    """Under JAX's data parallelism every batch must divide over the devices: with 4 devices a
    batch of 7 becomes 8, 10 rows go as two batches of 8 (the last padded to the full size
    traced), 5 rows alone as one of 8; through ``predict``, and every row comes back."""

    class Recorder:
        def __init__(self) -> None:
            self.shapes: list[int] = []

        def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
            assert batch_size == len(x)
            self.shapes.append(len(x))
            return x[:, :1] * 2

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    model = Recorder()
    out = Predictor(model, batch_size=7, replicas=4)(x)
    assert model.shapes == [8, 8] and np.array_equal(out[:, 0], x[:, 0] * 2)
    model.shapes.clear()
    out = Predictor(model, batch_size=256, replicas=4)(x[:5])
    assert model.shapes == [8] and np.array_equal(out[:, 0], x[:5, 0] * 2)
