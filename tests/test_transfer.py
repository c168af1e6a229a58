"""Transfer learning: tasks, freezing, fine-tuning, batch norm in inference mode, bases, weights."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from dllabs.data.datasets import ImageSplits
from dllabs.errors import DataError, ParamsError
from dllabs.labs.transfer import (
    NotApplicable,
    build_transfer_model,
    cut_base,
    few_per_class,
    load_base,
    parameter_counts,
    resolve_classes,
    set_trainable_top,
    target_task,
    task,
)
from dllabs.models.applications import application_base
from dllabs.params import CNN, Transfer, validate_params
from dllabs.training.callbacks import open_live
from dllabs.training.devices import RunDevice
from dllabs.training.fit import Curves, fit
from tests.loopback import LoopbackServer

CPU = RunDevice("cpu", "CPU", False, keras.backend.backend())


@pytest.fixture
def tiny(default_params: dict) -> tuple[Transfer, CNN]:
    """A small base (two conv blocks) and two-epoch phases, no augmentation."""
    small = {"filters": [4, 8], "kernel_sizes": [3], "dense_units": []}
    cnn = CNN(**{**default_params["cnn"], **small})
    raw = copy.deepcopy(default_params["transfer"])
    raw["augment"] = {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0}
    raw["head"] = {"pooling": "avg", "dense_units": [8], "dropout": 0.0}
    for phase in ("pretrain", "feature_extraction", "fine_tune"):
        raw[phase].update(epochs=2, patience=0, batch_size=8)
    raw["fine_tune"]["learning_rate"] = 0.01
    raw["target_train_size"] = 4
    return Transfer(**raw), cnn


# train_transfer's command line in the tests that run lab 5 in-process, in the working folder.
TRAIN_TRANSFER_ARGS = [
    "--images",
    "images",
    "--pretrained",
    "pre",
    "--model",
    "tr",
    "--plots",
    "tr_plots",
    "--validation",
    "validation.json",
]


def images(n_classes: int = 10, per_class: int = 8, seed: int = 0) -> ImageSplits:
    """Random 8x8 grayscale images with a class-dependent bright row, in three splits."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("train", "val", "test"):
        y = np.repeat(np.arange(n_classes), per_class)
        x = rng.integers(0, 60, size=(len(y), 8, 8, 1), dtype=np.uint8)
        x[np.arange(len(y)), y % 8, :, 0] = 255
        splits[split] = (x, y)
    return ImageSplits(splits, [str(i) for i in range(n_classes)])


def test_target_task_keeps_few_labels_and_the_whole_test_split(tiny) -> None:
    params, _ = tiny
    target = target_task(images(), params, seed=0)
    _, y = target["train"]
    assert target.class_names == ["5", "6", "7", "8", "9"]
    assert np.bincount(y).tolist() == [4] * 5  # relabelled 0..4, four each
    assert len(target["test"][1]) == 5 * 8  # untouched
    pair = task(images(), [5, 6], "k")["train"]
    assert np.array_equal(few_per_class(*pair, 4, 0)[0], few_per_class(*pair, 4, 0)[0])


def test_class_errors_name_the_key(tiny, default_params: dict) -> None:
    params, _ = tiny
    with pytest.raises(DataError, match=r"transfer.target_classes: 'cat' is not a class"):
        task(images(), ["cat"], "transfer.target_classes")
    with pytest.raises(DataError, match=r"target_train_size = 50 but target class 0 has only 8"):
        target_task(images(), params.model_copy(update={"target_train_size": 50}), seed=0)
    raw = copy.deepcopy(default_params)
    raw["transfer"]["source_classes"] = [0, 1, 2, 3, 4]
    raw["transfer"]["target_classes"] = [4, 5]
    with pytest.raises(ParamsError, match=r"source_classes and transfer.target_classes share 4"):
        validate_params(raw)
    overlapping = params.model_copy(update={"source_classes": [1, 2], "target_classes": "auto"})
    assert resolve_classes(["0", "1", "2", "3"], overlapping).target == ["0", "3"]


def test_auto_classes_take_the_first_and_second_half(tiny) -> None:
    params, _ = tiny
    assert params.source_classes == "auto" and params.target_classes == "auto"  # the defaults
    digits = resolve_classes([str(i) for i in range(10)], params)
    assert digits.source == ["0", "1", "2", "3", "4"]
    assert digits.target == ["5", "6", "7", "8", "9"]
    odd = resolve_classes(list("abcde"), params)
    assert (odd.source, odd.target) == (["a", "b"], ["c", "d", "e"])
    fixed_target = params.model_copy(update={"target_classes": ["a", "b"]})
    picked = resolve_classes(list("abcdef"), fixed_target)  # the source avoids the target
    assert (picked.source, picked.target) == (["c", "d", "e"], ["a", "b"])
    imagenet = resolve_classes(["cat", "dog"], params.model_copy(update={"base": "vgg16"}))
    assert (imagenet.source, imagenet.target) == ([], ["cat", "dog"])


def test_auto_classes_on_too_few_classes_are_not_applicable(tiny) -> None:
    params, _ = tiny
    with pytest.raises(NotApplicable, match=r"needs at least 4 classes .*; the image data has 3"):
        resolve_classes(["cat", "dog", "bird"], params)
    with pytest.raises(NotApplicable, match=r"needs at least 2 classes"):
        resolve_classes(["cat"], params.model_copy(update={"base": "vgg16"}))


def test_stages_record_not_applicable_and_evaluate_reports_it(
    tiny, workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two classes of photos (cats and dogs): the pipeline base cannot apply; nothing fails."""
    from dllabs.evaluation.reports import results_table
    from stages import evaluate_transfer, pretrain_base, train_transfer
    from tests.helpers.data import save_arrays

    workdir()
    data = images(n_classes=2)
    arrays = {f"{k}_{s}": a for s, (x, y) in data.splits.items() for k, a in (("x", x), ("y", y))}
    save_arrays("images", {**arrays, "class_names": np.array(["cat", "dog"])})
    pretrain_base.main(["--images", "images", "--model", "pre", "--plots", "pre_plots"])
    train_transfer.main(TRAIN_TRANSFER_ARGS)
    assert "not applicable" in (Path("pre") / "summary.json").read_text()
    metrics = evaluate_transfer.evaluate_transfer(Path("tr"), ImageSplits.load("images", ("test",)))
    assert metrics["not_applicable"].startswith("transfer.base pipeline needs at least 4 classes")
    labs = {"transfer": metrics}
    assert "| 5. Transfer learning | - | not applicable |" in results_table(labs)


def test_unknown_base_is_refused(default_params: dict) -> None:
    raw = copy.deepcopy(default_params)
    raw["transfer"]["base"] = "vgg61"
    with pytest.raises(ParamsError, match=r"transfer.base = 'vgg61' is not allowed.*vgg16"):
        validate_params(raw)


def frozen_model(tiny) -> tuple[keras.Model, keras.Model, Transfer]:
    params, cnn = tiny
    keras.utils.set_random_seed(0)
    base = load_base(params, "unused", cnn, (8, 8, 1), random=True)
    model = build_transfer_model(base, (8, 8, 1), 5, params)
    return model, base, params


def test_phase_one_leaves_the_frozen_base_unchanged_and_trains_the_head(tiny) -> None:
    model, base, params = frozen_model(tiny)
    set_trainable_top(base, 0, "transfer.trainable_base_layers")
    before = [w.copy() for w in base.get_weights()]
    head_before = model.get_layer("softmax").get_weights()[0].copy()
    target = target_task(images(), params, seed=0)
    fit(model, target["train"], target["val"], params.feature_extraction, CPU, None, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights(), strict=True))
    assert not np.array_equal(head_before, model.get_layer("softmax").get_weights()[0])
    counts = parameter_counts(model)
    assert counts["frozen_parameters"] == base.count_params()


def test_fine_tuning_unfreezes_exactly_the_top_layers(tiny) -> None:
    _, base, _ = frozen_model(tiny)
    names = [layer.name for layer in base.layers]
    unfrozen = set_trainable_top(base, 4, "transfer.fine_tune.unfreeze")
    assert names[-4:] == ["conv_2", "batch_norm_2", "relu_2", "pool_2"]
    assert unfrozen == ["conv_2", "relu_2", "pool_2"]  # batch norm stays frozen
    assert [layer.name for layer in base.layers if layer.trainable] == unfrozen
    assert [w.path for w in base.trainable_weights] == ["conv_2/kernel"]
    assert set_trainable_top(base, 0, "k") == [] and not base.trainable_weights
    with pytest.raises(ParamsError, match=r"transfer.fine_tune.unfreeze = 99 but the pipeline"):
        set_trainable_top(base, 99, "transfer.fine_tune.unfreeze")


def test_batch_norm_stays_in_inference_mode_while_fine_tuning(tiny) -> None:
    model, base, params = frozen_model(tiny)
    set_trainable_top(base, len(base.layers), "transfer.fine_tune.unfreeze")  # everything
    norm = base.get_layer("batch_norm_1")
    stats = [norm.moving_mean.numpy().copy(), norm.moving_variance.numpy().copy()]
    conv = base.get_layer("conv_1").kernel.numpy().copy()
    target = target_task(images(), params, seed=0)
    fit(model, target["train"], target["val"], params.fine_tune, CPU, None, verbose=0)
    assert np.array_equal(stats[0], norm.moving_mean.numpy())  # statistics never updated
    assert np.array_equal(stats[1], norm.moving_variance.numpy())
    assert not np.array_equal(conv, base.get_layer("conv_1").kernel.numpy())  # the rest trained


def test_both_phases_log_to_one_run_with_continuous_steps(tiny, tmp_path: Path) -> None:
    model, base, params = frozen_model(tiny)
    target = target_task(images(), params, seed=0)
    live = open_live(tmp_path / "live")
    set_trainable_top(base, 0, "k")
    phase = Curves.phase(live, "feature_extraction")
    first = fit(
        model, target["train"], target["val"], params.feature_extraction, CPU, phase, verbose=0
    )
    set_trainable_top(base, 4, "k")
    phase = Curves.phase(live, "fine_tune", after=first.epochs_trained)
    fit(model, target["train"], target["val"], params.fine_tune, CPU, phase, verbose=0)
    live.end()
    metrics = tmp_path / "live" / "plots" / "metrics"

    def steps(phase: str) -> list[int]:
        header, *rows = (metrics / phase / "eval" / "accuracy.tsv").read_text().splitlines()
        column = header.split("\t").index("step")
        return [int(row.split("\t")[column]) for row in rows]

    assert steps("feature_extraction") == [0, 1]
    assert steps("fine_tune") == [2, 3]


def test_pipeline_base_loads_from_the_pretrained_model(tiny, tmp_path: Path) -> None:
    from dllabs.models.builders import build_pretrain_model

    params, cnn = tiny
    keras.utils.set_random_seed(1)
    pretrained = build_pretrain_model((8, 8, 1), 5, cnn)
    pretrained.save(tmp_path / "base.keras")
    base = load_base(params, tmp_path / "base.keras", cnn, (8, 8, 1))
    expected = pretrained.get_layer("pipeline_base").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(expected, base.get_weights(), strict=True))
    with pytest.raises(DataError, match=r"no pretrained base; run pretrain_base"):
        load_base(params, tmp_path / "missing.keras", cnn, (8, 8, 1))
    cut = cut_base(base, "pool_1")
    assert cut.output.shape[-1] == 4
    with pytest.raises(ParamsError, match=r"transfer.cut_at = 'pool_9' is not a layer"):
        cut_base(base, "pool_9")


@pytest.mark.slow
def test_application_base_from_a_local_weights_file(tmp_path: Path) -> None:
    """The air-gapped path: weights saved by Keras load into the same base, and only into it."""
    keras.utils.set_random_seed(0)
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "mobilenet_v2.weights.h5"
    source.save_weights(path)
    base = application_base("mobilenet_v2", [32, 32], str(path))
    assert all(
        np.array_equal(a, b) for a, b in zip(source.get_weights(), base.get_weights(), strict=True)
    )
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    wrong = tmp_path / "other.weights.h5"
    other.save_weights(wrong)
    with pytest.raises(ParamsError, match=r"other.weights.h5 does not fit mobilenet_v2"):
        application_base("mobilenet_v2", [32, 32], str(wrong))
    with pytest.raises(ParamsError, match=r"transfer.weights = '.*nothing.h5': no such file"):
        application_base("mobilenet_v2", [32, 32], str(tmp_path / "nothing.h5"))


# keras.applications' MobileNetV2 asks for its 224x224 no-top file whatever the input size.
MOBILENET_NO_TOP = "/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture
def keras_weights_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Keras's ImageNet download, pointed at a loopback server and a fresh cache folder."""
    from keras.src.applications import mobilenet_v2
    from keras.src.backend import config

    home = tmp_path / "keras_home"
    home.mkdir()  # Keras falls back to /tmp/.keras when its home is not a writable folder
    monkeypatch.setattr(config, "keras_home", lambda: str(home))
    server = LoopbackServer()
    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", f"{server.base}/")
    try:
        yield server, home
    finally:
        server.close()


def test_imagenet_weights_are_downloaded_once_then_read_from_the_keras_cache(
    keras_weights_origin, tmp_path: Path
) -> None:
    """``weights: imagenet`` goes through Keras's download and cache (here from 127.0.0.1)."""
    server, home = keras_weights_origin
    keras.utils.set_random_seed(0)
    published = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    published.save(tmp_path / "published.h5")  # the legacy H5 layout Keras's files use
    server.script(MOBILENET_NO_TOP, ("ok", (tmp_path / "published.h5").read_bytes()))
    with pytest.warns(UserWarning, match="224"):  # Keras's note on the input size
        base = application_base("mobilenet_v2", [32, 32], "imagenet")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(published.get_weights(), base.get_weights(), strict=True)
    )
    assert (home / "models" / MOBILENET_NO_TOP.lstrip("/")).is_file()
    application_base("mobilenet_v2", [32, 32], "imagenet")
    assert server.hits == {MOBILENET_NO_TOP: 1}  # the second base came from the cache


def test_unreachable_imagenet_weights_point_to_a_local_file(keras_weights_origin) -> None:
    server, _ = keras_weights_origin  # nothing scripted: the server answers 404
    with pytest.raises(DataError, match=r"ImageNet weights .* set transfer.weights to a local"):
        application_base("mobilenet_v2", [32, 32], "imagenet")
    assert server.hits == {MOBILENET_NO_TOP: 1}


def test_input_below_the_base_minimum_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"input_size = \[16, 16\] is below vgg16's minimum"):
        application_base("vgg16", [16, 16], "none")


def test_application_model_takes_raw_grayscale_pixels(tiny, tmp_path: Path) -> None:
    """Resize, repeat to RGB and the base's own preprocess_input sit inside the saved model."""
    params, cnn = tiny
    params = params.model_copy(update={"base": "mobilenet_v2", "weights": "none"})
    base = load_base(params, "unused", cnn, (8, 8, 1))
    set_trainable_top(base, 0, "k")
    model = build_transfer_model(base, (8, 8, 1), 3, params)
    assert model.get_layer("grayscale_to_rgb").output.shape[-1] == 3
    x = images()["test"][0][:4]
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-6)


# --- ImageNet transfer with the installed EfficientNet-Lite0 -------------------------------------


def test_target_train_size_all_trains_on_every_image(tiny) -> None:
    params, _ = tiny
    data = images()
    every = target_task(data, params.model_copy(update={"target_train_size": "all"}), seed=0)
    few = target_task(data, params, seed=0)
    assert len(every["train"][1]) == len(task(data, every.class_names, "k")["train"][1])
    assert len(every["train"][1]) > len(few["train"][1])


def two_copies(params: Transfer, cnn: CNN, unfreeze: int) -> list[tuple[keras.Model, keras.Model]]:
    """The same transfer model twice (same seed, same weights), its base's top ``unfreeze``
    layers trainable."""
    copies = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        base = load_base(params, "unused", cnn, (8, 8, 1), random=True)
        model = build_transfer_model(base, (8, 8, 1), 5, params)
        set_trainable_top(base, unfreeze, "k")
        copies.append((model, base))
    return copies


@pytest.mark.parametrize("unfreeze", [0, 4])
def test_the_cached_path_trains_what_the_whole_model_trains(tiny, unfreeze: int) -> None:
    """Computing once what does not train gives the weights that running the whole model every
    step gives: the same sums per image, only batched otherwise when computed once (measured
    within 1e-6 here; 1e-4 allows for another CPU's kernels)."""
    from dllabs.labs.transfer import cached_training

    params, cnn = tiny
    target = target_task(images(), params, seed=0)
    (slow, _), (fast, fast_base) = two_copies(params, cnn, unfreeze)
    split = cached_training(fast, fast_base, params)
    assert split is not None
    # Frozen: up to the pooled features; top 4 layers trainable: up to the first block's output.
    assert split.cut == ("pool" if unfreeze == 0 else "pipeline_base/pool_1")
    fit(slow, target["train"], target["val"], params.feature_extraction, CPU, None, verbose=0)
    cached = [(split.prefix.predict(x, verbose=0), y) for x, y in (target["train"], target["val"])]
    fit(split.rest, *cached, params.feature_extraction, CPU, None, verbose=0)
    for a, b in zip(slow.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    x = target["val"][0]
    np.testing.assert_allclose(slow.predict(x, verbose=0), fast.predict(x, verbose=0), atol=1e-4)


def test_augmentation_runs_the_whole_model(tiny) -> None:
    from dllabs.labs.transfer import cached_training

    params, cnn = tiny
    params = params.model_copy(
        update={"augment": params.augment.model_copy(update={"flip": "horizontal"})}
    )
    (model, base), _ = two_copies(params, cnn, 0)
    assert cached_training(model, base, params) is None


@pytest.mark.slow
def test_the_imagenet_base_takes_raw_pixels_and_trains_a_step(tiny, tmp_path: Path) -> None:
    """efficientnet_lite0 with the installed ImageNet weights: resized, scaled inside the model,
    offline; the saved model reloads and predicts the same."""
    params, cnn = tiny
    params = params.model_copy(
        update={"base": "efficientnet_lite0", "weights": "imagenet", "input_size": [32, 32]}
    )
    base = load_base(params, "unused", cnn, (8, 8, 1))
    from dllabs.models import efficientnet_lite

    expected = efficientnet_lite.pretrained((32, 32, 3)).get_layer("top_conv").get_weights()
    assert np.array_equal(base.get_layer("top_conv").get_weights()[0], expected[0])
    set_trainable_top(base, 0, "k")
    model = build_transfer_model(base, (8, 8, 1), 5, params)
    assert [layer.name for layer in model.layers[1:4]] == [
        "resize",
        "grayscale_to_rgb",
        "preprocess",
    ]
    target = target_task(images(5), params, seed=0)
    fit(model, target["train"], target["val"], params.feature_extraction, CPU, None, verbose=0)
    model.save(tmp_path / "m.keras")
    from dllabs.models.loading import load_model

    again = load_model(tmp_path / "m.keras")
    x = target["val"][0][:4]
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-6)


def test_the_cnn_baseline_for_an_imagenet_base_is_lab_twos_cnn(tiny) -> None:
    params, cnn = tiny
    params = params.model_copy(
        update={"base": "efficientnet_lite0", "scratch": "cnn", "input_size": [32, 32]}
    )
    fresh = load_base(
        params, "unused", cnn.model_copy(update={"input_size": [6, 6]}), (8, 8, 1), random=True
    )
    assert fresh.name == "pipeline_base" and fresh.inputs[0].shape[1:] == (6, 6, 1)
    model = build_transfer_model(fresh, (8, 8, 1), 5, params, base_in_inference_mode=False)
    assert "preprocess" not in [layer.name for layer in model.layers]  # it rescales itself
    assert model.get_layer("resize").output.shape[1:3] == (6, 6)


def test_offline_keras_bases_name_the_installed_one(keras_weights_origin) -> None:
    with pytest.raises(
        DataError,
        match=r"use transfer.base efficientnet_lite0 \(its ImageNet "
        r"weights install with this project\)",
    ):
        application_base("mobilenet_v2", [32, 32], "imagenet")


@pytest.mark.slow
def test_two_classes_of_photos_transfer_from_imagenet_end_to_end(workdir) -> None:
    """The photos case the pipeline base cannot take: two classes, every labelled image, the
    ImageNet base offline, the frozen parts computed once, lab 2's CNN as the baseline; then the
    evaluation stage and `dl-labs predict transfer` on a saved image."""
    from PIL import Image

    from dllabs.prediction import command as predict_command
    from stages import evaluate_transfer, pretrain_base, train_transfer
    from tests.helpers.data import save_arrays

    quick = {
        f"transfer.{phase}.{key}": value
        for phase in ("feature_extraction", "fine_tune")
        for key, value in (("epochs", 2), ("batch_size", 8))
    }
    workdir(
        **{
            "transfer.base": "efficientnet_lite0",
            "transfer.input_size": [32, 32],
            "transfer.target_train_size": "all",
            "transfer.repeats": 1,
            "transfer.scratch": "cnn",
            "transfer.trainable_base_layers": 0,
            "transfer.augment.rotation": 0.0,
            "transfer.augment.zoom": 0.0,
            "transfer.augment.translation": 0.0,
            "cnn.filters": [4],
            "cnn.kernel_sizes": [3],
            "cnn.input_size": [8, 8],
            **quick,
        }
    )
    rng = np.random.default_rng(0)
    arrays: dict = {"class_names": np.array(["cat", "dog"])}
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        y = np.arange(n) % 2
        x = rng.integers(0, 100, (n, 16, 16, 3)) + (y * 120)[:, None, None, None]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y
    save_arrays("images", arrays)
    pretrain_base.main(["--images", "images", "--model", "pre", "--plots", "pre_plots"])
    train_transfer.main(TRAIN_TRANSFER_ARGS)
    assert "efficientnet_lite0" in (Path("pre") / "summary.json").read_text()  # nothing trained
    summary = json.loads((Path("tr") / "summary.json").read_text())
    draw = summary["repeats"][0]
    assert summary["classes"] == ["cat", "dog"] and draw["train_images"] == 24
    assert draw["feature_extraction"]["computed_once_up_to"] == "pool"
    assert draw["fine_tune"]["computed_once_up_to"] == "efficientnet_lite0/block14_add"
    assert draw["scratch"]["network"] == "pipeline_base"
    evaluate_transfer.main(["--images", "images", "--model", "tr", "--metrics", "m.json"])
    metrics = json.loads(Path("m.json").read_text())
    assert {"scratch", "feature_extraction", "fine_tune"} <= set(metrics)
    assert metrics["fine_tune"]["n"] == 8
    Image.fromarray(arrays["x_test"][1]).save("dog.png")
    predict_command.main(["transfer", "dog.png", "--model", "tr", "--json"])
