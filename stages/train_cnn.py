"""Stage ``train_cnn`` (lab 2: a CNN image classifier).

Load the training and validation images; define a convolutional network (conv -> batch norm ->
ReLU -> max-pool blocks, a dense head with dropout, random augmentation active only while
training; or the classic LeNet-5); train it with validation loss driving early stopping; save the
model, its training curves (DVCLive) and a summary of the run. The test split is not read here.
"""

from __future__ import annotations

from dllabs.cli import parse_paths
from dllabs.datasets import ImageSplits
from dllabs.errors import stage_errors
from dllabs.models import build_cnn
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.training import fit, setup_run


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_cnn"):
        params = load_params()
        args = parse_paths(
            argv, "train_cnn", __doc__,
            images="processed images (.npz)", model="output model (.keras)",
            plots="output DVCLive folder", summary="output run summary (.json)",
        )  # fmt: skip
        data = ImageSplits.load(args.images, ("train", "val"))
        device = setup_run(params.base)
        model = build_cnn(data.input_shape, data.n_classes, params.cnn)
        model.summary(print_fn=print)
        with staged_outputs() as out:
            result = fit(model, data["train"], data["val"], params.cnn, device, out.dir(args.plots))
            model.save(out.file(args.model))
            save_json(out.file(args.summary), result.to_json())
        print(f"train_cnn: {result.epochs_trained} epochs on {result.device}")


if __name__ == "__main__":
    main()
