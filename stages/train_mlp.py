"""Stage ``train_mlp`` (lab 1: a feedforward network trained with SGD).

Load the training and validation images (from disk a batch at a time when they do not fit
in memory: :mod:`dllabs.data.datasets`); build a multilayer perceptron (flatten, dense hidden
layers with the chosen activation, dropout, L1/L2 penalties, optional batch norm, softmax); train
it with the chosen optimizer (SGD with momentum by default) while validation loss drives early
stopping; save the model, its training curves (DVCLive) and a summary of the run.
The test split is not read here.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("train_mlp", multi_process=True)

from dllabs.data.datasets import ImageBatches, ImageSplits
from dllabs.errors import stage_errors
from dllabs.models.builders import PixelStats, build_mlp
from dllabs.models.inputs import image_record
from dllabs.params import load_params
from dllabs.stage_args import parse_paths
from dllabs.training.devices import setup_run, sum_over_processes
from dllabs.training.fit import TRAINING_PATHS, fit_and_save
from dllabs.training.resume import resumable


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_mlp"):
        params = load_params()
        args = parse_paths(argv, "train_mlp", __doc__, **TRAINING_PATHS)
        data = ImageSplits.load(args.images, ("train", "val"))
        device = setup_run(params.base, multi_process=True)
        stats = PixelStats.of(data["train"][0], device.share, sum_over_processes)
        model = build_mlp(data.input_shape, data.n_classes, params.mlp, stats)
        model.summary(print_fn=print)
        batch, seed = params.mlp.batch_size, params.base.seed
        train = ImageBatches(*data["train"], batch, shuffle=True, seed=seed)
        val = ImageBatches(*data["val"], batch)
        with resumable(args.model, "train_mlp") as checkpoint:
            result = fit_and_save(
                model,
                train,
                val,
                params.mlp,
                device,
                args,
                inputs=image_record(data.input_shape, data.class_names),
                params_key="mlp",
                checkpoint=checkpoint,
            )
        print(f"train_mlp: {result.epochs_trained} epochs on {result.device}")


if __name__ == "__main__":
    main()
