"""Stage ``train_cnn`` (lab 2: a CNN image classifier).

Load the training and validation images (from disk a batch at a time when they do not fit
in memory: :mod:`dllabs.data.datasets`); define a convolutional network (conv -> batch norm ->
ReLU -> max-pool blocks, a dense head with dropout, random augmentation active only while
training; or the classic LeNet-5); train it with validation loss driving early stopping; save the
model, its training curves (DVCLive) and a summary of the run. The test split is not read here.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("train_cnn", multi_process=True)

from dllabs.data.datasets import ImageBatches, ImageSplits
from dllabs.errors import stage_errors
from dllabs.models.builders import PixelStats, build_cnn
from dllabs.models.inputs import image_record
from dllabs.params import load_params
from dllabs.stage_args import parse_paths
from dllabs.training.devices import setup_run, sum_over_processes
from dllabs.training.fit import TRAINING_PATHS, fit_and_save
from dllabs.training.resume import resumable


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_cnn"):
        params = load_params()
        args = parse_paths(argv, "train_cnn", __doc__, **TRAINING_PATHS)
        data = ImageSplits.load(args.images, ("train", "val"))
        device = setup_run(params.base, multi_process=True)
        stats = PixelStats.of(data["train"][0], device.share, sum_over_processes)
        model = build_cnn(data.input_shape, data.n_classes, params.cnn, stats)
        model.summary(print_fn=print)
        batch, seed = params.cnn.batch_size, params.base.seed
        train = ImageBatches(*data["train"], batch, shuffle=True, seed=seed)
        val = ImageBatches(*data["val"], batch)
        with resumable(args.model, "train_cnn") as checkpoint:
            result = fit_and_save(
                model,
                train,
                val,
                params.cnn,
                device,
                args,
                inputs=image_record(data.input_shape, data.class_names),
                params_key="cnn",
                checkpoint=checkpoint,
            )
        print(f"train_cnn: {result.epochs_trained} epochs on {result.device}")


if __name__ == "__main__":
    main()
