"""The Keras port of EfficientNet-Lite0 against the reference implementation's logits, and the
weights loader's checks of names and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dllabs.errors import DataError
from dllabs.models import efficientnet_lite
from dllabs.models.torch_state import read_state_dict
from tests.reference.efficientnet_lite0 import OUTPUT, pixels_digest, reference_inputs
from tests.torch_files import torch_save

# Measured on this project's machines: the Keras port is within 1e-5 of the reference PyTorch
# implementation's logits (which range over about -4 to 9), on the committed crops and on 80 cat
# and dog photos. Another CPU sums the convolutions in another order (oneDNN picks kernels by
# instruction set), which moves float32 logits by about 1e-5 more; 1e-3 leaves room for both and
# still fails on any real mistake (a wrong padding side or transposition moves them by 0.1 to 10).
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite.pretrained(include_top=True)


def test_the_port_gives_the_reference_implementations_logits(classifier) -> None:
    reference = np.load(OUTPUT)
    images = reference_inputs()
    assert pixels_digest(images) == str(reference["pixels_sha256"]), (
        "scikit-learn's sample photos decode to other pixels here than where the reference ran"
    )
    scaled = (images.astype(np.float32) - efficientnet_lite.MEAN) / efficientnet_lite.STDDEV
    logits = np.asarray(classifier.predict(scaled, verbose=0))
    assert logits.shape == (4, 1000)
    assert np.abs(logits - reference["logits"]).max() < TOLERANCE
    assert np.array_equal(logits.argmax(axis=1), reference["logits"].argmax(axis=1))


def test_the_scaling_layer_is_the_reference_scaling() -> None:
    pixels = np.array([[0.0, 127.0, 255.0]], dtype=np.float32)
    scaled = np.asarray(efficientnet_lite.scale_pixels()(pixels))
    np.testing.assert_allclose(scaled, [[-127 / 128, 0.0, 1.0]], atol=1e-7)


def test_without_the_top_it_ends_at_the_head_convolution_at_any_size() -> None:
    for size, side in ((224, 7), (160, 5), (97, 4)):
        base = efficientnet_lite.build((size, size, 3))
        assert base.output_shape == (None, side, side, 1280)
    assert base.count_params() == 3_413_024  # 4,694,024 less the 1,000-class layer (1,281,000)


def state_without(tmp_path: Path, change) -> Path:
    state = read_state_dict(efficientnet_lite.weights_file())
    change(state)
    return torch_save(tmp_path / "changed.pth", state, "zip")


def test_a_state_dict_missing_a_tensor_is_one_line(tmp_path: Path) -> None:
    path = state_without(tmp_path, lambda s: s.pop("_blocks.3._bn1.running_var"))
    with pytest.raises(
        DataError,
        match=r"changed.pth: not EfficientNet-Lite0's state dict "
        r"\(no tensor _blocks.3._bn1.running_var; 1 missing",
    ):
        efficientnet_lite.pretrained(weights=path)


def test_a_tensor_of_another_shape_is_one_line(tmp_path: Path) -> None:
    def grow(state: dict) -> None:
        state["_conv_head.weight"] = np.zeros((1280, 321, 1, 1), np.float32)

    path = state_without(tmp_path, grow)
    with pytest.raises(
        DataError,
        match=r"_conv_head.weight has shape \(1280, 321, 1, 1\), which "
        r"does not fit the Keras layer top_conv",
    ):
        efficientnet_lite.pretrained(weights=path)


def test_predict_imagenet_names_the_classes_of_the_installed_network(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dl-labs predict imagenet`: the lab sheet's first step, offline, with class names."""
    import json

    from PIL import Image

    from dllabs.prediction import command as predict_command

    names = efficientnet_lite.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"
    Image.fromarray(reference_inputs()[0]).save(tmp_path / "temple.png")
    monkeypatch.chdir(tmp_path)
    predict_command.main(["imagenet", "temple.png", "--top", "2", "--json"])
    out, err = capsys.readouterr()
    (record,) = json.loads(out)
    expected = int(np.load(OUTPUT)["logits"][0].argmax())
    assert record["predictions"][0]["class"] == names[expected] == "palace"
    assert "EfficientNet-Lite0 trained on ImageNet" in err
    with pytest.raises(SystemExit):
        predict_command.main(["imagenet", "temple.png", "--model", "models/cnn"])
    assert "predict imagenet: the network installed with the project" in capsys.readouterr().err
