"""Model builders: architectures, every optimizer and activation, augmentation, round trips."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from dllabs.errors import ParamsError
from dllabs.models.builders import (
    PixelStats,
    architecture_markdown,
    architecture_table,
    augmentation,
    build_cnn,
    build_mlp,
    build_pipeline_base,
    build_pretrain_model,
)
from dllabs.params import CNN, MLP, validate_params


@pytest.fixture
def mlp_params(default_params: dict) -> dict:
    return copy.deepcopy(default_params["mlp"])


@pytest.fixture
def cnn_params(default_params: dict) -> dict:
    return copy.deepcopy(default_params["cnn"])


def lenet_style(cnn_params: dict) -> CNN:
    """The lecture's example: conv 3x3/8 same, pool, conv 5x5/16 valid, pool, 120, 84, 10."""
    cnn_params.update(
        preset="custom",
        filters=[8, 16],
        kernel_sizes=[3, 5],
        padding=["same", "valid"],
        batch_norm=False,
        pool_size=2,
        pooling="flatten",
        dense_units=[120, 84],
        dropout=0.0,
        augment={"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0},
    )
    return CNN(**cnn_params)


def test_lenet_style_architecture_table(cnn_params: dict) -> None:
    model = build_cnn((28, 28, 1), 10, lenet_style(cnn_params))
    rows = {row["layer"]: row for row in architecture_table(model)}
    expected = {
        "conv_1": ((28, 28, 8), 6272, 80),
        "pool_1": ((14, 14, 8), 1568, 0),
        "conv_2": ((10, 10, 16), 1600, 3216),
        "pool_2": ((5, 5, 16), 400, 0),
        "dense_1": ((120,), 120, 48120),
        "dense_2": ((84,), 84, 10164),
        "softmax": ((10,), 10, 850),
    }
    for name, (shape, size, parameters) in expected.items():
        assert rows[name]["output_shape"] == shape
        assert rows[name]["activation_size"] == size
        assert rows[name]["parameters"] == parameters
    assert sum(row["parameters"] for row in rows.values()) == 62430 == model.count_params()
    markdown = architecture_markdown(model)
    assert "| conv_2 | Conv2D | (10, 10, 16) | 1,600 | 3,216 |" in markdown
    assert "Total parameters: 62,430" in markdown


@pytest.mark.parametrize(
    ("optimizer", "activation"),
    [(opt, "relu") for opt in ("sgd", "adagrad", "adadelta", "rmsprop", "adam")]
    + [("sgd", act) for act in ("tanh", "sigmoid", "leaky_relu", "elu")],
)
def test_every_optimizer_and_activation_trains_a_step(
    mlp_params: dict, optimizer: str, activation: str
) -> None:
    from dllabs.models.builders import make_optimizer

    mlp_params.update(optimizer=optimizer, activation=activation, hidden_units=[8], batch_norm=True)
    params = MLP(**mlp_params)
    model = build_mlp((4, 4, 1), 3, params)
    model.compile(optimizer=make_optimizer(params), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1)).astype(np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_mlp_layers_follow_params(mlp_params: dict) -> None:
    mlp_params.update(hidden_units=[16, 8], dropout=0.5, l1=0.01, l2=0.0, batch_norm=False)
    model = build_mlp((8, 8, 1), 10, MLP(**mlp_params))
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["pixels", "rescale", "flatten"]
    assert {"dense_1", "dense_2", "dropout_1", "dropout_2"} <= set(names)
    assert model.get_layer("dense_1").kernel_regularizer is not None
    assert model.get_layer("softmax").units == 10


def test_rescaling_inside_the_model_takes_raw_pixels(mlp_params: dict) -> None:
    model = build_mlp((2, 2, 1), 2, MLP(**mlp_params))
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_augmentation_is_active_only_in_training(cnn_params: dict) -> None:
    cnn_params["augment"] = {"flip": "horizontal", "rotation": 0.2, "zoom": 0.2, "translation": 0.2}
    stack = augmentation(CNN(**cnn_params).augment)
    assert [type(layer).__name__ for layer in stack] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
    ]
    x = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 1)).astype("float32")
    inference, training = x, x
    for layer in stack:
        inference = layer(inference, training=False)
        training = layer(training, training=True)
    assert np.array_equal(keras.ops.convert_to_numpy(inference), x)
    assert not np.allclose(keras.ops.convert_to_numpy(training), x)
    model = build_cnn((16, 16, 1), 3, CNN(**cnn_params))
    assert np.array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_cnn_handles_rgb_and_grayscale(cnn_params: dict) -> None:
    for shape in [(8, 8, 1), (28, 28, 1), (32, 32, 3)]:
        model = build_cnn(shape, 10, CNN(**cnn_params))
        assert model.output_shape == (None, 10)


def test_lenet5_preset(cnn_params: dict) -> None:
    cnn_params["preset"] = "lenet5"
    small = build_cnn((8, 8, 1), 10, CNN(**cnn_params))
    assert small.get_layer("resize").output.shape[1:3] == (28, 28)
    assert small.get_layer("s4").output.shape[1:] == (5, 5, 16)
    rgb = build_cnn((32, 32, 3), 10, CNN(**cnn_params))
    assert rgb.get_layer("c3").output.shape[1:] == (12, 12, 16)


def test_pipeline_base_follows_the_cnn_preset(cnn_params: dict) -> None:
    custom = build_pipeline_base((8, 8, 1), CNN(**cnn_params))
    assert not any(layer.name in {"c1", "s4"} for layer in custom.layers)
    cnn_params["preset"] = "lenet5"
    base = build_pipeline_base((8, 8, 1), CNN(**cnn_params))
    assert [layer.name for layer in base.layers][-4:] == ["c1", "s2", "c3", "s4"]
    assert base.output_shape == (None, 5, 5, 16)
    pretrain = build_pretrain_model((8, 8, 1), 5, CNN(**cnn_params))
    names = [layer.name for layer in pretrain.layers]
    assert names[-4:] == ["flatten", "f5", "f6", "softmax"]
    assert pretrain.get_layer("pipeline_base").output_shape == (None, 5, 5, 16)


def test_keras_round_trip_with_safe_mode(tmp_path, cnn_params: dict) -> None:
    model = build_cnn((8, 8, 1), 4, CNN(**cnn_params))
    x = np.random.default_rng(2).integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def test_bad_cnn_params_are_clear_errors(cnn_params: dict, default_params: dict) -> None:
    cnn_params.update(filters=[8, 16], kernel_sizes=[3, 9], padding="valid")
    with pytest.raises(ParamsError, match=r"cnn\.kernel_sizes: block 2 has a 9x9 'valid' kernel"):
        build_cnn((8, 8, 1), 10, CNN(**cnn_params))
    params = copy.deepcopy(default_params)
    params["cnn"]["kernel_sizes"] = [3, 3]
    with pytest.raises(
        ParamsError, match=r"cnn\.kernel_sizes has 2 entries but cnn\.filters has 3"
    ):
        validate_params(params)
    params = copy.deepcopy(default_params)
    params["mlp"]["activation"] = "relu6"
    with pytest.raises(ParamsError, match=r"mlp\.activation = 'relu6' is not allowed"):
        validate_params(params)
    params = copy.deepcopy(default_params)
    params["cnn"]["augment"]["flip"] = "diagonal"
    with pytest.raises(ParamsError, match=r"cnn\.augment\.flip = 'diagonal'"):
        validate_params(params)
    params = copy.deepcopy(default_params)
    params["mlp"]["optimizer"] = "adamw"
    with pytest.raises(
        ParamsError, match=r"mlp\.optimizer = 'adamw' is not allowed.*did you mean 'adam'"
    ):
        validate_params(params)


def test_pixel_stats_are_per_channel_in_unit_scale() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (5000, 3, 4, 3), dtype=np.uint8)  # more than one chunk
    stats = PixelStats.of(images)
    flat = images.reshape(-1, 3) / 255.0
    assert np.allclose(stats.mean, flat.mean(axis=0)) and np.allclose(stats.variance, flat.var(0))
    with pytest.raises(ValueError, match="no images"):
        PixelStats.of(images[:0])


def test_models_standardise_raw_pixels_with_the_training_statistics(
    tmp_path, mlp_params: dict, cnn_params: dict
) -> None:
    """Inside the saved model, so it still takes raw uint8 pixels; a constant channel is safe."""
    rng = np.random.default_rng(4)
    x = rng.integers(100, 200, (64, 8, 8, 2), dtype=np.uint8)
    x[..., 1] = 50  # a constant channel: variance 0
    stats = PixelStats.of(x)
    mlp = build_mlp((8, 8, 2), 3, MLP(**mlp_params), stats)
    standardised = keras.Model(mlp.input, mlp.get_layer("standardize").output).predict(x, verbose=0)
    assert np.allclose(standardised[..., 0].mean(), 0.0, atol=1e-4)
    assert np.allclose(standardised[..., 0].std(), 1.0, atol=1e-3)
    assert np.allclose(standardised[..., 1], 0.0, atol=1e-6)
    cnn = build_cnn((8, 8, 2), 3, CNN(**cnn_params), stats)
    cnn.save(tmp_path / "cnn.keras")
    loaded = keras.models.load_model(tmp_path / "cnn.keras", safe_mode=True)
    assert np.allclose(loaded.predict(x, verbose=0), cnn.predict(x, verbose=0), atol=1e-6)
    assert "standardize" in [layer.name for layer in loaded.layers]


def test_initialisation_follows_the_activation(mlp_params: dict) -> None:
    expected = {
        "relu": "HeNormal",
        "elu": "HeNormal",
        "tanh": "GlorotUniform",
        "sigmoid": "GlorotUniform",
    }
    for activation, initializer in expected.items():
        model = build_mlp((4, 4, 1), 2, MLP(**{**mlp_params, "activation": activation}))
        assert type(model.get_layer("dense_1").kernel_initializer).__name__ == initializer


def test_mlp_input_size_resizes_inside_the_model(mlp_params: dict) -> None:
    mlp_params.update(input_size=[16, 16], hidden_units=[8])
    model = build_mlp((64, 64, 3), 2, MLP(**mlp_params))
    assert model.input_shape == (None, 64, 64, 3)  # the saved model takes full-size images
    assert model.get_layer("flatten").output.shape[1] == 16 * 16 * 3
    assert model.get_layer("dense_1").count_params() == (16 * 16 * 3 + 1) * 8
    same = build_mlp((16, 16, 3), 2, MLP(**mlp_params))
    assert "resize" not in [layer.name for layer in same.layers]


def test_global_pooling_keeps_the_head_the_same_size_for_any_image(cnn_params: dict) -> None:
    heads = {}
    for pooling in ("avg", "max", "flatten"):
        for size in (32, 128):
            model = build_cnn((size, size, 3), 2, CNN(**{**cnn_params, "pooling": pooling}))
            heads[pooling, size] = model.get_layer("dense_1").count_params()
    assert heads["avg", 32] == heads["avg", 128] == heads["max", 128]
    assert heads["flatten", 128] == 16 * heads["flatten", 32] - 15 * 128  # 16x the inputs
