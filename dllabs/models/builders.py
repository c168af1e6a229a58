"""Keras model builders for the image labs, written against the Keras 3 API only.

No ``tf.*`` here, so the backend stays switchable. Every model takes raw ``uint8`` pixels and
scales them itself (a ``Rescaling`` layer), so a saved model needs no separate preprocessing.
The MLP and the CNN also standardise them with the training split's per-channel mean and variance
(a ``Normalization`` layer holding :class:`PixelStats`): 8x8 digits are mostly black, photos are
not, and inputs centred on zero let one learning rate suit both. Weights start as the activation
wants them (He for the ReLU family, Glorot for tanh and sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, regularizers

from dllabs.data.arrays import NpyRows
from dllabs.errors import ParamsError
from dllabs.params import CNN, MLP, Augment, Autoencoder, Training

PIXEL_SCALE = 1.0 / 255.0
BN_MOMENTUM = 0.9
RELU_FAMILY = ("relu", "leaky_relu", "elu")
PIXEL_CHUNK = 2048  # images summed at once, up to:
PIXEL_CHUNK_VALUES = 1 << 22  # pixel values: 32 MB as float64, whatever the image size


@dataclass(frozen=True)
class PixelStats:
    """Per-channel mean and variance of training pixels scaled to [0, 1]."""

    mean: tuple[float, ...]
    variance: tuple[float, ...]

    @classmethod
    def of(
        cls,
        images: np.ndarray | NpyRows,
        share: tuple[int, int] = (0, 1),
        add_up: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> PixelStats:
        """Statistics of uint8 NHWC ``images``, summed in float64 a chunk of rows at a time, so
        images on disk (:class:`~dllabs.data.arrays.NpyRows`) are read once and never held whole.

        In a multi-process run each process reads only its ``share`` (part, parts) of the rows and
        ``add_up`` sums the processes' totals (:func:`dllabs.training.devices.sum_over_processes`).
        """
        channels = images.shape[-1]
        rows = min(PIXEL_CHUNK, max(1, PIXEL_CHUNK_VALUES // int(np.prod(images.shape[1:]))))
        part, parts = share
        first, last = len(images) * part // parts, len(images) * (part + 1) // parts
        sums = np.zeros(2 * channels + 1)  # per channel: values, squares; then the count
        for start in range(first, last, rows):
            chunk = images[start : min(start + rows, last)].reshape(-1, channels) * PIXEL_SCALE
            sums[:channels] += chunk.sum(axis=0)
            sums[channels:-1] += np.square(chunk).sum(axis=0)
            sums[-1] += len(chunk)
        if add_up is not None:
            sums = add_up(sums)
        total, squares, count = sums[:channels], sums[channels:-1], sums[-1]
        if not count:
            raise ValueError("no images to take pixel statistics from")
        mean = total / count
        variance = np.maximum(squares / count - np.square(mean), 0.0)
        return cls(tuple(float(m) for m in mean), tuple(float(v) for v in variance))


def scale_pixels(x: keras.KerasTensor, stats: PixelStats | None) -> keras.KerasTensor:
    """uint8 pixels to [0, 1], then (given training statistics) to zero mean, unit variance."""
    x = layers.Rescaling(PIXEL_SCALE, name="rescale")(x)
    if stats is None:
        return x
    # A constant channel (variance 0) would divide by zero: leave its scale alone.
    variance = [v if v > 1e-12 else 1.0 for v in stats.variance]
    return layers.Normalization(mean=list(stats.mean), variance=variance, name="standardize")(x)


def initializer(activation: str) -> str:
    """He initialisation keeps ReLU-family activations at unit scale; Glorot suits tanh/sigmoid."""
    return "he_normal" if activation in RELU_FAMILY else "glorot_uniform"


def make_optimizer(training: Training) -> keras.optimizers.Optimizer:
    """The optimizer named in params; momentum applies to sgd and rmsprop, nesterov to sgd."""
    rate = training.learning_rate
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=training.momentum, nesterov=training.nesterov)
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, momentum=training.momentum)
    if training.optimizer == "adagrad":
        return keras.optimizers.Adagrad(rate)
    if training.optimizer == "adadelta":
        return keras.optimizers.Adadelta(rate)
    return keras.optimizers.Adam(rate)


def _activation(name: str) -> layers.Layer:
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.01)
    return layers.Activation(name)


def build_mlp(
    input_shape: tuple[int, ...],
    n_classes: int,
    params: MLP,
    pixel_stats: PixelStats | None = None,
) -> keras.Model:
    """(Augment, resize), standardise, flatten, [Dense, (BatchNorm), activation, Dropout] x N.

    ``mlp.input_size`` shrinks images inside the model: every pixel is an input weight per hidden
    unit, so a 64x64 photo gives 12,288 inputs where 16x16 gives 768, and an MLP trained on a few
    thousand photos generalises better with fewer (the saved model still takes full-size pixels).
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    for layer in augmentation(params.augment):
        x = layer(x)
    if params.input_size is not None and list(params.input_size) != list(input_shape[:2]):
        height, width = params.input_size
        x = layers.Resizing(height, width, antialias=True, name="resize")(x)
    x = scale_pixels(x, pixel_stats)
    x = layers.Flatten(name="flatten")(x)
    penalty = regularizers.L1L2(l1=params.l1, l2=params.l2) if params.l1 or params.l2 else None
    for i, units in enumerate(params.hidden_units, start=1):
        x = layers.Dense(
            units,
            use_bias=not params.batch_norm,
            kernel_initializer=initializer(params.activation),
            kernel_regularizer=penalty,
            name=f"dense_{i}",
        )(x)
        if params.batch_norm:
            x = layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = _activation(params.activation)(x)
        if params.dropout:
            x = layers.Dropout(params.dropout, name=f"dropout_{i}")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name="mlp")


def augmentation(params: Augment) -> list[layers.Layer]:
    """Random flip/rotation/zoom/translation layers; Keras applies them only when training."""
    stack: list[layers.Layer] = []
    if params.flip != "none":
        stack.append(layers.RandomFlip(params.flip, name="random_flip"))
    if params.rotation:
        stack.append(
            layers.RandomRotation(params.rotation, fill_mode="constant", name="random_rotation")
        )
    if params.zoom:
        stack.append(layers.RandomZoom(params.zoom, fill_mode="constant", name="random_zoom"))
    if params.translation:
        t = params.translation
        stack.append(
            layers.RandomTranslation(t, t, fill_mode="constant", name="random_translation")
        )
    return stack


def build_cnn(
    input_shape: tuple[int, ...],
    n_classes: int,
    params: CNN,
    pixel_stats: PixelStats | None = None,
) -> keras.Model:
    """Conv blocks and a dense head, or the classic LeNet-5 when ``preset: lenet5``."""
    if params.preset == "lenet5":
        return build_lenet5(input_shape, n_classes, params)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = resize_to(inputs, params.input_size)
    for layer in augmentation(params.augment):
        x = layer(x)
    x = scale_pixels(x, pixel_stats)
    x = conv_blocks(x, params)
    x = pool_features(x, params.pooling)
    outputs = dense_head(x, n_classes, params.dense_units, params.dropout)
    return keras.Model(inputs, outputs, name="cnn")


def resize_to(x: keras.KerasTensor, size: list[int] | None) -> keras.KerasTensor:
    """Images resized (antialiased) to ``size`` inside the model, first, so augmentation and
    convolutions work on the smaller image; unchanged when ``size`` is None or theirs already.
    The photos preset stores photos large, as the transfer lab's ImageNet bases need them; lab 2's
    CNN trains on them at a CNN's size this way, and its saved model still takes the images as
    ``preprocess`` stored them."""
    if size is None or list(size) == list(x.shape[1:3]):
        return x
    return layers.Resizing(*size, antialias=True, name="resize")(x)


def pool_features(x: keras.KerasTensor, pooling: str) -> keras.KerasTensor:
    """Feature maps to a vector: global average or max pooling, or flattening every position.

    Global pooling keeps the head's size independent of the image size (a 64x64 photo and an
    8x8 digit give the same number of features); flattening grows with it.
    """
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="global_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="global_pool")(x)
    return layers.Flatten(name="flatten")(x)


def dense_head(
    x: keras.KerasTensor, n_classes: int, units: list[int], dropout: float
) -> keras.KerasTensor:
    """[Dropout -> Dense ReLU] per entry of ``units``, Dropout, then a float32 softmax."""
    for i, width in enumerate(units, start=1):
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
        x = layers.Dense(
            width, activation="relu", kernel_initializer="he_normal", name=f"dense_{i}"
        )(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout_out")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="softmax")(x)


def conv_blocks(x: keras.KerasTensor, params: CNN) -> keras.KerasTensor:
    """The CNN's feature extractor: conv -> (batch norm) -> ReLU -> max-pool per filter count."""
    blocks = len(params.filters)
    paddings = params.padding if isinstance(params.padding, list) else [params.padding]
    paddings = paddings * blocks if len(paddings) == 1 else paddings
    kernels = params.kernel_sizes * blocks if len(params.kernel_sizes) == 1 else params.kernel_sizes
    for i, (filters, kernel, padding) in enumerate(
        zip(params.filters, kernels, paddings, strict=True), 1
    ):
        height, width = x.shape[1], x.shape[2]
        if padding == "valid" and (kernel > height or kernel > width):
            raise ParamsError(
                f"cnn.kernel_sizes: block {i} has a {kernel}x{kernel} 'valid' kernel but its input "
                f"is only {height}x{width}; use padding 'same', smaller kernels or fewer blocks"
            )
        if params.batch_norm:
            x = layers.Conv2D(
                filters,
                kernel,
                padding=padding,
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"conv_{i}",
            )(x)
            # momentum 0.9 (Keras defaults to 0.99): with the few steps per epoch of these small
            # datasets, 0.99 leaves the inference statistics lagging for dozens of epochs.
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"batch_norm_{i}")(x)
            x = layers.ReLU(name=f"relu_{i}")(x)
        else:
            x = layers.Conv2D(
                filters,
                kernel,
                padding=padding,
                activation="relu",
                kernel_initializer="he_normal",
                name=f"conv_{i}",
            )(x)
        if min(x.shape[1], x.shape[2]) >= params.pool_size > 1:
            x = layers.MaxPooling2D(params.pool_size, name=f"pool_{i}")(x)
    return x


def base_input_shape(input_shape: tuple[int, ...], params: CNN) -> tuple[int, ...]:
    """The shape the pipeline base takes: the images', or ``cnn.input_size`` when set."""
    if params.input_size is None:
        return tuple(input_shape)
    return (*params.input_size, input_shape[-1])


def build_pipeline_base(input_shape: tuple[int, ...], params: CNN) -> keras.Model:
    """The CNN's convolutional part as its own model: the base that transfer learning reuses.

    It follows ``cnn.preset``: the conv blocks, or LeNet-5's C1-S4 layers. ``input_shape`` is
    what it takes, after any ``cnn.input_size`` resizing (:func:`base_input_shape`).
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    if params.preset == "lenet5":
        return keras.Model(inputs, lenet5_features(inputs, input_shape), name="pipeline_base")
    x = layers.Rescaling(PIXEL_SCALE, name="rescale")(inputs)
    return keras.Model(inputs, conv_blocks(x, params), name="pipeline_base")


def build_pretrain_model(input_shape: tuple[int, ...], n_classes: int, params: CNN) -> keras.Model:
    """The CNN of lab 2 with its convolutional part as a nested ``pipeline_base`` to transfer."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = resize_to(inputs, params.input_size)
    for layer in augmentation(params.augment):
        x = layer(x)
    x = build_pipeline_base(base_input_shape(input_shape, params), params)(x)
    if params.preset == "lenet5":
        outputs = lenet5_head(layers.Flatten(name="flatten")(x), n_classes)
    else:
        x = pool_features(x, params.pooling)
        outputs = dense_head(x, n_classes, params.dense_units, params.dropout)
    return keras.Model(inputs, outputs, name="pretrain")


def build_lenet5(input_shape: tuple[int, ...], n_classes: int, params: CNN) -> keras.Model:
    """LeCun et al. (1998): 6 and 16 5x5 convolutions with average pooling, then 120-84 dense.

    Inputs smaller than 28x28 (the 8x8 digits) are first resized to 28x28, where LeNet-5's
    first 'same' convolution and two poolings leave a 5x5 map, as in the paper's 32x32 layout.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = resize_to(inputs, params.input_size)
    for layer in augmentation(params.augment):
        x = layer(x)
    x = lenet5_features(x, base_input_shape(input_shape, params))
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, lenet5_head(x, n_classes), name="lenet5")


def lenet5_features(x: keras.KerasTensor, input_shape: tuple[int, ...]) -> keras.KerasTensor:
    """LeNet-5's feature extractor: (resize to 28x28), rescale, C1, S2, C3, S4."""
    if input_shape[0] < 28 or input_shape[1] < 28:
        x = layers.Resizing(28, 28, name="resize")(x)
    x = layers.Rescaling(PIXEL_SCALE, name="rescale")(x)
    x = layers.Conv2D(6, 5, padding="same", activation="tanh", name="c1")(x)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="tanh", name="c3")(x)
    return layers.AveragePooling2D(2, name="s4")(x)


def lenet5_head(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """LeNet-5's classifier: F5 (120), F6 (84), then a float32 softmax."""
    x = layers.Dense(120, activation="tanh", name="f5")(x)
    x = layers.Dense(84, activation="tanh", name="f6")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="softmax")(x)


def build_autoencoder(n_features: int, params: Autoencoder) -> keras.Model:
    """Dense encoder -> code -> mirrored decoder, reconstructing its (scaled) input rows.

    ``noise_stddev`` > 0 adds Gaussian noise to the inputs during training only (a denoising
    autoencoder); ``code_l1`` > 0 adds an L1 activity penalty on the code (a sparse one).
    """
    inputs = keras.Input(shape=(n_features,), name="rows")
    x = inputs
    if params.noise_stddev:
        x = layers.GaussianNoise(params.noise_stddev, name="input_noise")(x)
    for i, units in enumerate(params.hidden_units, start=1):
        x = layers.Dense(units, name=f"encoder_{i}")(x)
        x = _activation(params.activation)(x)
    sparsity = regularizers.L1(params.code_l1) if params.code_l1 else None
    x = layers.Dense(params.code_size, activity_regularizer=sparsity, name="code")(x)
    x = _activation(params.activation)(x)
    for i, units in enumerate(reversed(params.hidden_units), start=1):
        x = layers.Dense(units, name=f"decoder_{i}")(x)
        x = _activation(params.activation)(x)
    outputs = layers.Dense(
        n_features, activation=params.output_activation, dtype="float32", name="reconstruction"
    )(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def architecture_table(model: keras.Model) -> list[dict]:
    """One row per layer: name, type, output shape, activation size, parameters.

    Activation size is the number of values a layer outputs per example (the product of its
    output shape without the batch axis), the quantity lectures tabulate next to parameters.
    """
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        size = 1
        for dim in shape:
            size *= int(dim)
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": shape,
                "activation_size": size,
                "parameters": int(layer.count_params()),
            }
        )
    return rows


def architecture_markdown(model: keras.Model) -> str:
    """The architecture table as Markdown, with trainable and total parameter counts."""
    lines = [
        f"# {model.name}",
        "",
        "| layer | type | output shape | activation size | parameters |",
        "|---|---|---|---:|---:|",
    ]
    for row in architecture_table(model):
        shape = "(" + ", ".join(str(d) for d in row["output_shape"]) + ")"
        lines.append(
            f"| {row['layer']} | {row['type']} | {shape} | {row['activation_size']:,} | "
            f"{row['parameters']:,} |"
        )
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    lines += ["", f"Total parameters: {model.count_params():,} (trainable: {trainable:,})", ""]
    return "\n".join(lines)
