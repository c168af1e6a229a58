"""Stage ``pretrain_base`` (lab 5, step 1: the base that transfer learning reuses).

With ``transfer.base: pipeline`` (the offline default), train the CNN of lab 2 on the source
classes only (``transfer.source_classes``) and save it; its convolutional part, a nested model
named ``pipeline_base``, is what ``train_transfer`` freezes and fine-tunes on the disjoint target
classes. Being its own DVC stage, the base is trained once: changing only head or fine-tuning params
reruns ``train_transfer`` alone. With an ImageNet base (``efficientnet_lite0`` or a
``keras.applications`` one), or data with too few classes for ``auto`` source and target classes,
this stage trains nothing and says why in its summary.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("pretrain_base")

from dllabs.data.datasets import ImageSplits
from dllabs.errors import stage_errors
from dllabs.labs.transfer import NotApplicable, source_task
from dllabs.models.builders import build_pretrain_model
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.stage_args import parse_paths
from dllabs.training.callbacks import open_live
from dllabs.training.devices import setup_run
from dllabs.training.fit import Curves, fit
from dllabs.training.resume import resumable


def main(argv: list[str] | None = None) -> None:
    with stage_errors("pretrain_base"):
        params = load_params()
        args = parse_paths(
            argv,
            "pretrain_base",
            __doc__,
            images="processed images (folder of .npy arrays)",
            model="output folder: base.keras (the whole source-task CNN) and summary.json",
            plots="output DVCLive folder",
        )
        transfer = params.transfer
        data = ImageSplits.load(args.images, ("train", "val"))
        skipped = f"transfer.base is {transfer.base}" if transfer.base != "pipeline" else ""
        if not skipped:
            try:
                source = source_task(data, transfer)
            except NotApplicable as reason:
                skipped = f"not applicable: {reason}"
        if skipped:
            with staged_outputs() as out:
                open_live(out.dir(args.plots)).end()
                save_json(out.dir(args.model) / "summary.json", {"skipped": skipped})
            print(f"pretrain_base: nothing to train, {skipped}")
            return
        device = setup_run(params.base)
        model = build_pretrain_model(data.input_shape, len(source.class_names), params.cnn)
        model.summary(print_fn=print, expand_nested=True)
        with resumable(args.model, "pretrain_base") as checkpoint, staged_outputs() as out:
            folder = out.dir(args.model)
            curves = Curves.to(out.dir(args.plots))
            result = fit(
                model,
                source["train"],
                source["val"],
                transfer.pretrain,
                device,
                curves,
                params_key="transfer.pretrain",
                checkpoint=checkpoint,
            )
            model.save(folder / "base.keras")
            save_json(folder / "summary.json", {**result.to_json(), "classes": source.class_names})
        print(
            f"pretrain_base: {result.epochs_trained} epochs on classes "
            f"{', '.join(source.class_names)} ({len(source['train'][1])} images) on {result.device}"
        )


if __name__ == "__main__":
    main()
