"""Stage ``train_transfer`` (lab 5: transfer learning, then fine-tuning, against a baseline).

1. Load a pretrained base: the pipeline's own CNN base (pretrained on the source classes by
   ``pretrain_base``), EfficientNet-Lite0 with the ImageNet weights installed with the project, or
   a ``keras.applications`` model with ImageNet (downloaded) or local weights.
2. Take the target task: every labelled image (``transfer.target_train_size: all``) or a few per
   class.
3. Freeze the base (or all but its top ``transfer.trainable_base_layers`` layers) and add a new
   classifier: pooling, dense layers, dropout, softmax.
4. Phase 1, feature extraction: train the head.
5. Phase 2, fine-tuning: unfreeze the base's top ``transfer.fine_tune.unfreeze`` layers (batch norm
   stays in inference mode), recompile with a low learning rate, and train on. Both phases log to
   one DVCLive run whose steps continue from phase 1 into phase 2. Where nothing augments the
   images, what does not train in a phase is computed once per image and the rest trains on its
   outputs (``dllabs.labs.transfer.cached_training``), the same training at a fraction of the cost.
6. Baseline: from random weights, on the same data, with the epochs of both phases as its budget:
   the same network, or lab 2's CNN (``transfer.scratch: cnn``).

With a few labels per class the result depends on which images were drawn, so steps 2-6 run
``transfer.repeats`` times, draw ``r`` with seed ``base.seed + r``; all three models of a draw see
the same images, so ``evaluate`` can report paired differences. Draw 0 logs the curves.

Saves the models of every draw (``repeat_<r>/<phase>.keras``) and a summary of epochs, seconds and
parameter counts; ``evaluate`` tests them. On data with too few classes for ``auto`` classes it
trains nothing and records why. Each phase of each draw keeps its own checkpoint
(``dllabs.training.resume``): a killed run reruns nothing that had finished and continues the phase
it was in from its last epoch.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("train_transfer")

import time
from pathlib import Path

import keras
import numpy as np

from dllabs.data.datasets import ImageSplits
from dllabs.errors import stage_errors
from dllabs.labs.transfer import (
    MAX_CACHE_BYTES,
    NotApplicable,
    build_transfer_model,
    cache_bytes,
    cached_training,
    load_base,
    parameter_counts,
    resolve_classes,
    set_trainable_top,
    target_task,
)
from dllabs.models.inputs import image_record
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import Params, Training, Transfer, load_params
from dllabs.prediction.batches import predict
from dllabs.provenance import platform_record
from dllabs.stage_args import parse_paths
from dllabs.training.callbacks import open_live
from dllabs.training.devices import RunDevice, setup_run
from dllabs.training.fit import Curves, fit
from dllabs.training.resume import Checkpoint, resumable


def validation_accuracy(model: keras.Model, val: tuple, device: RunDevice) -> dict[str, float]:
    """Accuracy on the target's validation split: what choosing a configuration may look at.
    Every row counts, also where JAX's data parallelism splits each batch over the devices."""
    predicted = np.argmax(predict(model, val[0], replicas=device.predict_replicas), axis=1)
    return {"val_accuracy": round(float(np.mean(predicted == val[1])), 6)}


def validation_over_draws(draws: list[dict], val_images: int) -> dict:
    """Each model's validation accuracy, mean over the draws and per draw: what choosing settings
    may look at (``dl-labs tune`` maximises fine-tuning's), the test split unread."""
    return {"n": val_images, "repeats": len(draws)} | {
        phase: {
            "accuracy": round(float(np.mean([d[phase]["val_accuracy"] for d in draws])), 6),
            "per_repeat": [d[phase]["val_accuracy"] for d in draws],
        }
        for phase in ("scratch", "feature_extraction", "fine_tune")
    }


def train_phase(
    model: keras.Model,
    base: keras.Model,
    params: Transfer,
    training: Training,
    data: tuple[tuple, tuple],
    device: RunDevice,
    curves: Curves,
    *,
    params_key: str,
    checkpoint: Checkpoint,
) -> dict:
    """One phase: fit ``model`` (its trainable layers as set), and what the phase did.

    Without augmentation, the part of the model that does not train is run once per image
    (:func:`~dllabs.labs.transfer.cached_training`) and the rest trains on its outputs: the same
    training in a fraction of the time. With augmentation, every step runs the whole model.
    """
    (train, val), start = data, time.perf_counter()
    split = cached_training(model, base, params)
    if (
        split is not None
        and cache_bytes(split.prefix, len(train[1]) + len(val[1])) > MAX_CACHE_BYTES
    ):
        split = None  # too large to hold: the whole model, step by step
    if split is not None:
        train = (predict(split.prefix, train[0], replicas=device.predict_replicas), train[1])
        val = (predict(split.prefix, val[0], replicas=device.predict_replicas), val[1])
        trained = split.rest
    else:
        trained = model
    result = fit(
        trained, train, val, training, device, curves, params_key=params_key, checkpoint=checkpoint
    )
    return {
        **result.to_json(),
        **validation_accuracy(trained, val, device),
        "computed_once_up_to": "" if split is None else split.cut,
        "phase_seconds": round(time.perf_counter() - start, 2),
    }


def train_draw(
    data: ImageSplits,
    params: Params,
    seed: int,
    pretrained: Path,
    folder: Path,
    plots: Path | None,
    device: RunDevice,
    checkpoint: Checkpoint,
) -> dict:
    """Steps 2-6 for one draw of labelled images; ``plots`` is None for draws that log nothing.

    Each of the three trainings keeps its own part of the draw's ``checkpoint``.
    """
    t = params.transfer
    target = target_task(data, t, seed)
    splits = (target["train"], target["val"])
    n_classes = len(target.class_names)
    folder.mkdir(parents=True)
    keras.utils.set_random_seed(seed)

    base = load_base(t, pretrained, params.cnn, data.input_shape)
    model = build_transfer_model(base, data.input_shape, n_classes, t)
    set_trainable_top(base, t.trainable_base_layers, "transfer.trainable_base_layers")
    counts = parameter_counts(model)
    live = open_live(plots / "transfer") if plots else None
    phase1 = train_phase(
        model,
        base,
        t,
        t.feature_extraction,
        splits,
        device,
        Curves.phase(live, "feature_extraction"),
        params_key="transfer.feature_extraction",
        checkpoint=checkpoint.part("feature_extraction"),
    )
    model.save(folder / "feature_extraction.keras")
    summary: dict = {
        "seed": seed,
        "train_images": len(splits[0][1]),
        "feature_extraction": {**counts, **phase1},
    }

    unfrozen = set_trainable_top(base, t.fine_tune.unfreeze, "transfer.fine_tune.unfreeze")
    counts = parameter_counts(model)
    phase2 = train_phase(
        model,
        base,
        t,
        t.fine_tune,
        splits,
        device,
        Curves.phase(live, "fine_tune", after=phase1["epochs_trained"]),
        params_key="transfer.fine_tune",
        checkpoint=checkpoint.part("fine_tune"),
    )
    if live:
        live.end()
    model.save(folder / "fine_tune.keras")
    summary["fine_tune"] = {**counts, **phase2, "unfrozen_layers": unfrozen}

    keras.utils.set_random_seed(seed)
    fresh = load_base(t, pretrained, params.cnn, data.input_shape, random=True)
    scratch = build_transfer_model(
        fresh, data.input_shape, n_classes, t, base_in_inference_mode=False
    )
    budget = t.feature_extraction.model_copy(
        update={"epochs": t.feature_extraction.epochs + t.fine_tune.epochs}
    )
    start = time.perf_counter()
    curves = Curves.to(plots / "scratch" if plots else None)
    baseline = fit(
        scratch,
        *splits,
        budget,
        device,
        curves,
        checkpoint=checkpoint.part("scratch"),
        params_key="transfer.feature_extraction",
    )
    scratch.save(folder / "scratch.keras")
    summary["scratch"] = {
        **parameter_counts(scratch),
        **baseline.to_json(),
        **validation_accuracy(scratch, splits[1], device),
        "network": fresh.name,
        "phase_seconds": round(time.perf_counter() - start, 2),
    }
    print(
        f"train_transfer: seed {seed}: epochs: feature extraction {phase1['epochs_trained']} "
        f"({phase1['phase_seconds']:.0f} s), fine-tune {phase2['epochs_trained']} "
        f"({phase2['phase_seconds']:.0f} s), scratch {baseline.epochs_trained} "
        f"({summary['scratch']['phase_seconds']:.0f} s, {fresh.name})"
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_transfer"):
        params = load_params()
        args = parse_paths(
            argv,
            "train_transfer",
            __doc__,
            images="processed images (folder of .npy arrays)",
            pretrained="pretrain_base's output folder",
            model="output folder: every draw's three models and summary.json",
            plots="output DVCLive folder (transfer/ and scratch/ runs of draw 0)",
            validation="output validation accuracy of each model, over the draws (.json)",
        )
        t = params.transfer
        data = ImageSplits.load(args.images, ("train", "val"))
        try:
            classes = resolve_classes(data.class_names, t)
        except NotApplicable as reason:
            with staged_outputs() as out:
                for live_dir in ("transfer", "scratch"):
                    open_live(out.dir(args.plots) / live_dir).end()
                save_json(out.dir(args.model) / "summary.json", {"not_applicable": str(reason)})
                save_json(out.file(args.validation), {"not_applicable": str(reason)})
            print(f"train_transfer: not applicable: {reason}")
            return
        device = setup_run(params.base)
        pretrained = Path(args.pretrained) / "base.keras"

        with resumable(args.model, "train_transfer") as checkpoint, staged_outputs() as out:
            folder, plots = out.dir(args.model), out.dir(args.plots)
            draws = [
                train_draw(
                    data,
                    params,
                    params.base.seed + r,
                    pretrained,
                    folder / f"repeat_{r}",
                    plots if r == 0 else None,
                    device,
                    checkpoint.part(f"repeat_{r}"),
                )
                for r in range(t.repeats)
            ]
            val_images = len(target_task(data, t, params.base.seed)["val"][1])
            save_json(out.file(args.validation), validation_over_draws(draws, val_images))
            save_json(
                folder / "summary.json",
                {
                    "base": t.base,
                    "weights": t.weights if t.base != "pipeline" else "pipeline",
                    "source_classes": classes.source,
                    "classes": classes.target,
                    "target_train_size": t.target_train_size,
                    "val_images": val_images,
                    "repeats": draws,
                    "inputs": image_record(data.input_shape, classes.target),
                    "platform": platform_record(),
                },
            )
        print(
            f"train_transfer: {t.base} base, {t.repeats} draws of {t.target_train_size} images "
            f"per class, on {device.description}"
        )


if __name__ == "__main__":
    main()
