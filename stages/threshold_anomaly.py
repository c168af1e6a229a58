"""Stage ``threshold_anomaly`` (lab 3, part 2: choose the reconstruction-error threshold).

Rows whose reconstruction error is at or above the threshold are anomalies. The threshold comes
from the training and validation errors only (``anomaly.threshold_method``): mean + k * std of the
training error (TensorFlow's tutorial rule), a percentile of the normal validation error, or the
best F1 on the validation split. Writes the threshold, the method and the validation scores for
``evaluate``, and the validation scores again as a metrics file. Imports no TensorFlow.
"""

from __future__ import annotations

from dllabs.errors import stage_errors
from dllabs.labs.anomaly import choose_threshold, detection_scores, require_finite
from dllabs.outputs import load_npz, save_json, staged_outputs
from dllabs.params import load_params
from dllabs.stage_args import parse_paths


def main(argv: list[str] | None = None) -> None:
    with stage_errors("threshold_anomaly"):
        params = load_params()
        args = parse_paths(
            argv,
            "threshold_anomaly",
            __doc__,
            errors="reconstruction errors (.npz)",
            threshold="output threshold and scores (.json)",
            validation="output validation metrics at that threshold (.json)",
        )
        data = load_npz(args.errors, required=("error_train", "error_val", "y_val"))
        for name in ("error_train", "error_val"):
            require_finite(data[name], f"{args.errors}: {name}")
        rule = params.anomaly
        threshold = choose_threshold(
            rule.threshold_method,
            data["error_train"],
            data["error_val"],
            data["y_val"],
            k=rule.k,
            percentile=rule.percentile,
        )
        settings = {"mean_std": {"k": rule.k}, "percentile": {"percentile": rule.percentile}}
        payload = {
            "threshold": threshold,
            "method": rule.threshold_method,
            "settings": settings.get(rule.threshold_method, {}),
            "validation": detection_scores(data["y_val"], data["error_val"], threshold),
        }
        with staged_outputs() as out:
            save_json(out.file(args.threshold), payload)
            # What choosing settings may look at (dl-labs tune maximises F1): validation rows only.
            save_json(out.file(args.validation), {"threshold": threshold, **payload["validation"]})
        val = payload["validation"]
        print(
            f"threshold_anomaly: {rule.threshold_method} -> {threshold:.5f}; validation "
            f"F1 {val['f1']:.3f}, ROC AUC {val['roc_auc']}"
        )


if __name__ == "__main__":
    main()
