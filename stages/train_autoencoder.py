"""Stage ``train_autoencoder`` (lab 3, part 1: an autoencoder for anomaly detection).

Load the anomaly data: training rows are all normal, validation rows hold both classes. Build a
dense autoencoder (encoder -> code -> mirrored decoder; optionally denoising or sparse) and train
it to reconstruct the normal training rows, with the normal validation rows driving early
stopping. Save the model with what predicting on new rows needs (the features, their scaling
and the error measure), its training curve, and the per-row reconstruction error of the
training and validation splits for ``threshold_anomaly``. The test split is not read here.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("train_autoencoder")

import numpy as np

from dllabs.errors import ParamsError, stage_errors
from dllabs.labs.anomaly import reconstruction_errors
from dllabs.models.builders import build_autoencoder
from dllabs.models.inputs import series_record
from dllabs.outputs import load_json, load_npz, save_npz, staged_outputs
from dllabs.params import Autoencoder, load_params
from dllabs.prediction.batches import predict
from dllabs.stage_args import parse_paths
from dllabs.training.devices import setup_run
from dllabs.training.fit import fit_and_save
from dllabs.training.resume import resumable


def check_loss_fits_data(params: Autoencoder, rows: np.ndarray, source: str) -> None:
    """Binary cross-entropy and a sigmoid output only make sense for inputs in [0, 1]."""
    low, high = float(rows.min()), float(rows.max())
    if low >= 0.0 and high <= 1.0:
        return
    for key, value in (("loss", params.loss), ("output_activation", params.output_activation)):
        if value in ("binary_crossentropy", "sigmoid"):
            raise ParamsError(
                f"autoencoder.{key} is {value!r}, which needs inputs scaled to [0, 1], but "
                f"{source} holds values in [{low:.3g}, {high:.3g}]; use data.anomaly_scaling: "
                "minmax, or loss mae/mse with output_activation linear"
            )


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_autoencoder"):
        params = load_params()
        args = parse_paths(
            argv,
            "train_autoencoder",
            __doc__,
            series="processed anomaly rows (.npz)",
            series_summary="their summary (.json): features and the training rows' scaling",
            model="output model folder (model.keras, summary.json)",
            plots="output DVCLive folder",
            errors="output reconstruction errors, train and val (.npz)",
        )
        data = load_npz(args.series, required=("x_train", "x_val", "y_val"))
        x_train, x_val, y_val = data["x_train"], data["x_val"], data["y_val"]
        normal_val = x_val[y_val == 0]
        ae = params.autoencoder
        check_loss_fits_data(ae, np.concatenate([x_train, normal_val]), str(args.series))

        device = setup_run(params.base)
        model = build_autoencoder(x_train.shape[1], ae)
        model.summary(print_fn=print)
        with resumable(args.model, "train_autoencoder") as checkpoint, staged_outputs() as out:
            result = fit_and_save(
                model,
                (x_train, x_train),
                (normal_val, normal_val),
                ae,
                device,
                args,
                inputs=series_record(load_json(args.series_summary), ae.loss),
                outputs=out,
                loss=ae.loss,
                metrics=[],
                params_key="autoencoder",
                checkpoint=checkpoint,
            )
            errors = {
                split: reconstruction_errors(
                    x, predict(model, x, replicas=device.predict_replicas), ae.loss
                )
                for split, x in (("train", x_train), ("val", x_val))
            }
            save_npz(
                out.file(args.errors),
                {
                    "error_train": errors["train"],
                    "error_val": errors["val"],
                    "y_val": y_val,
                },
            )
        print(
            f"train_autoencoder: {result.epochs_trained} epochs on {result.device}; "
            f"mean training error {errors['train'].mean():.4f}"
        )


if __name__ == "__main__":
    main()
