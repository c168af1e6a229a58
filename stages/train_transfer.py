"""Stage ``train_transfer`` (lab 5: transfer learning, then fine-tuning, against a baseline).

1. Load a pretrained base: the pipeline's own CNN base (pretrained on the source classes by
   ``pretrain_base``) or a ``keras.applications`` model with ImageNet or local weights.
2. Take the target task with few labels per class (``transfer.target_train_size``).
3. Freeze the base (or all but its top ``transfer.trainable_base_layers`` layers) and add a new
   classifier: pooling, dense layers, dropout, softmax.
4. Phase 1, feature extraction: train the head.
5. Phase 2, fine-tuning: unfreeze the base's top ``transfer.fine_tune.unfreeze`` layers (batch norm
   stays in inference mode), recompile with a low learning rate, and train on. Both phases log to
   one DVCLive run whose steps continue from phase 1 into phase 2.
6. Baseline: the same architecture from random weights, on the same data, with the epochs of both
   phases as its budget.

Saves the three models and a summary of epochs and parameter counts; ``evaluate`` tests them.
"""

from __future__ import annotations

from pathlib import Path

import keras

from dllabs.cli import parse_paths
from dllabs.datasets import ImageSplits
from dllabs.errors import stage_errors
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.training import fit, open_live, setup_run
from dllabs.transfer import (
    build_transfer_model,
    load_base,
    parameter_counts,
    set_trainable_top,
    target_task,
)


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_transfer"):
        params = load_params()
        args = parse_paths(
            argv, "train_transfer", __doc__,
            images="processed images (.npz)", pretrained="pretrain_base's output folder",
            model="output folder: the three models and summary.json",
            plots="output DVCLive folder (transfer/ and scratch/ runs)",
        )  # fmt: skip
        t = params.transfer
        data = ImageSplits.load(args.images, ("train", "val"))
        target = target_task(data, t, params.base.seed)
        train, val = target["train"], target["val"]
        n_classes = len(target.class_names)
        device = setup_run(params.base)
        pretrained = Path(args.pretrained) / "base.keras"

        with staged_outputs() as out:
            folder, plots = out.dir(args.model), out.dir(args.plots)
            base = load_base(t, pretrained, params.cnn, data.input_shape)
            model = build_transfer_model(base, data.input_shape, n_classes, t)
            summary: dict = {"base": t.base, "weights": t.weights if t.base != "pipeline" else
                             "pipeline", "classes": target.class_names,
                             "train_images": len(train[1]), "val_images": len(val[1])}  # fmt: skip

            set_trainable_top(base, t.trainable_base_layers, "transfer.trainable_base_layers")
            counts = parameter_counts(model)
            live = open_live(plots / "transfer")
            phase1 = fit(model, train, val, t.feature_extraction, device, live,
                         live_prefix="feature_extraction")  # fmt: skip
            model.save(folder / "feature_extraction.keras")
            summary["feature_extraction"] = {**counts, **phase1.to_json()}

            unfrozen = set_trainable_top(base, t.fine_tune.unfreeze, "transfer.fine_tune.unfreeze")
            counts = parameter_counts(model)
            phase2 = fit(model, train, val, t.fine_tune, device, live, live_prefix="fine_tune",
                         initial_epoch=phase1.epochs_trained)  # fmt: skip
            live.end()
            model.save(folder / "fine_tune.keras")
            summary["fine_tune"] = {**counts, **phase2.to_json(), "unfrozen_layers": unfrozen}

            keras.utils.set_random_seed(params.base.seed)
            fresh = load_base(t, pretrained, params.cnn, data.input_shape, random=True)
            scratch = build_transfer_model(
                fresh, data.input_shape, n_classes, t, base_in_inference_mode=False
            )
            budget = t.feature_extraction.model_copy(
                update={"epochs": t.feature_extraction.epochs + t.fine_tune.epochs}
            )
            baseline = fit(scratch, train, val, budget, device, plots / "scratch")
            scratch.save(folder / "scratch.keras")
            summary["scratch"] = {**parameter_counts(scratch), **baseline.to_json()}
            save_json(folder / "summary.json", summary)
        print(
            f"train_transfer: {t.base} base, {len(train[1])} target images; epochs: feature "
            f"extraction {phase1.epochs_trained}, fine-tune {phase2.epochs_trained}, scratch "
            f"{baseline.epochs_trained}"
        )


if __name__ == "__main__":
    main()
