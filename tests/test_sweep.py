"""The transfer sweep report: one row per labels-per-class size, paired differences called only
when their interval excludes zero."""

from __future__ import annotations

import pytest

from dllabs.tooling.sweep import by_size, report

M = "metrics/transfer.json:"


def experiment(
    size: int, created: str, scratch: float, fine_tune: float, low: float, high: float
) -> dict:
    row = {
        "Created": created,
        "params.yaml:transfer.target_train_size": size,
        f"{M}test_images": 134,
        f"{M}repeats": 3,
    }
    for phase, mean in (
        ("scratch", scratch),
        ("feature_extraction", 0.7),
        ("fine_tune", fine_tune),
    ):
        row |= {
            f"{M}{phase}.accuracy": mean,
            f"{M}{phase}.accuracy_std": 0.01,
            f"{M}{phase}.validation_accuracy": mean,
        }
    for key in (
        "fine_tune_minus_scratch",
        "feature_extraction_minus_scratch",
        "fine_tune_minus_feature_extraction",
    ):
        row |= {
            f"{M}paired_differences.{key}.accuracy": (low + high) / 2,
            f"{M}paired_differences.{key}.ci95.accuracy.low": low,
            f"{M}paired_differences.{key}.ci95.accuracy.high": high,
        }
    return row


def test_one_row_per_size_the_latest_experiment_wins() -> None:
    rows = [
        experiment(10, "2026-11-23T10:00", 0.9, 0.8, -0.2, -0.05),
        experiment(10, "2026-11-23T11:00", 0.95, 0.8, -0.2, -0.05),
        experiment(2, "2026-11-23T10:30", 0.7, 0.75, 0.01, 0.09),
        {"Created": None, "params.yaml:transfer.target_train_size": 5},
    ]  # no metrics yet
    chosen = by_size(rows)
    assert list(chosen) == [2, 10]
    assert chosen[10][f"{M}scratch.accuracy"] == 0.95


def test_differences_are_called_only_outside_zero() -> None:
    text = report(
        [
            experiment(2, "a", 0.7, 0.75, 0.01, 0.09),
            experiment(10, "b", 0.95, 0.8, -0.2, -0.05),
            experiment(50, "c", 0.97, 0.97, -0.02, 0.03),
        ],
        "digits",
    )
    lines = {line.split(" |")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "fine-tuning ahead" in lines["| 2"]
    assert "scratch ahead" in lines["| 10"]
    assert "no clear difference" in lines["| 50"]
    one_image = report([experiment(25, "d", 0.978, 0.970, -0.007463, -0.007463)], "digits")
    assert "scratch ahead" not in one_image  # a zero-width interval on one image proves little
    assert "134 target test images" in text and "3 draws" in text
    assert "0.950 ± 0.010 [0.950]" in lines["| 10"]


def test_no_sweep_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="run the sweep first"):
        report([], "digits")
