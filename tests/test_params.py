"""The params schema: every stage validates the whole file and names the bad key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from dllabs.errors import ParamsError
from dllabs.params import load_params, read_yaml, validate_params
from tests.helpers.repo import REPO
from tests.helpers.stages import set_key


def error_for(default_params: dict, **overrides) -> str:
    params = copy.deepcopy(default_params)
    for key, value in overrides.items():
        set_key(params, key, value)
    with pytest.raises(ParamsError) as caught:
        validate_params(params)
    return str(caught.value)


def test_committed_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.data.images == "digits"
    assert params.data.anomaly == "digits"
    assert params.data.text == "lee"
    assert params.base.device in ("auto", "cpu", "gpu")


def test_unknown_key_names_full_path_and_closest_key(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    params["data"]["imagez"] = params["data"].pop("images")
    with pytest.raises(ParamsError, match=r"unknown key data\.imagez; did you mean data\.images\?"):
        validate_params(params)


def test_unknown_nested_key(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    params["data"]["split"]["val_fractoin"] = 0.1
    with pytest.raises(
        ParamsError, match=r"data\.split\.val_fractoin; did you mean data\.split\.val_fraction"
    ):
        validate_params(params)


def test_unknown_section(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    params["bsae"] = params.pop("base")
    with pytest.raises(ParamsError, match=r"unknown key bsae; did you mean base\?"):
        validate_params(params)


def test_misspelt_choice_names_key_value_and_choices(default_params: dict) -> None:
    message = error_for(default_params, **{"data.images": "mnits"})
    assert "data.images = 'mnits'" in message
    assert "'fashion_mnist'" in message and "'cifar10'" in message
    assert "did you mean 'mnist'" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("base.seed", "42", r"base\.seed = '42': input should be a valid integer"),
        ("base.seed", -1, r"base\.seed = -1: input should be greater than or equal to 0"),
        ("base.seed", 1.5, r"base\.seed = 1\.5"),
        ("base.device", "tpu", r"base\.device = 'tpu' is not allowed; expected one of"),
        (
            "data.split.val_fraction",
            1.5,
            r"data\.split\.val_fraction = 1\.5: input should be less than 1",
        ),
        (
            "data.split.test_fraction",
            0,
            r"data\.split\.test_fraction = 0: input should be greater than 0",
        ),
        ("data.image_size", [32], r"data\.image_size = \[32\]: list should have at least 2 items"),
        ("data.image_size", [32, "a"], r"data\.image_size\[1\] = 'a'"),
        ("data.ecg_sha256", "abc", r"data\.ecg_sha256 = 'abc': string should match pattern"),
        (
            "tokenize.lowercase",
            "yes",
            r"tokenize\.lowercase = 'yes': input should be a valid boolean",
        ),
        ("tokenize.extra_stopwords", [1], r"tokenize\.extra_stopwords\[0\] = 1"),
        ("tokenize.min_token_length", 0, r"tokenize\.min_token_length = 0"),
        (
            "data.label_column",
            [1],
            r"data\.label_column = \[1\]: input should be a valid integer or",
        ),
    ],
)
def test_wrong_type_or_range(default_params: dict, key: str, value, expected: str) -> None:
    message = error_for(default_params, **{key: value})
    assert message.startswith("params.yaml: ")
    assert "\n" not in message
    assert re.search(expected, message), message


def test_missing_key_is_named(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    del params["tokenize"]["lowercase"]
    with pytest.raises(ParamsError, match=r"missing key tokenize\.lowercase"):
        validate_params(params)


def test_split_fractions_must_leave_training_rows(default_params: dict) -> None:
    message = error_for(
        default_params, **{"data.split.val_fraction": 0.5, "data.split.test_fraction": 0.45}
    )
    assert "data.split.val_fraction + data.split.test_fraction" in message


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"data.images": "folder"}, "data.images_dir"),
        ({"data.anomaly": "csv", "data.label_column": 0}, "data.csv_path"),
        ({"data.anomaly": "csv", "data.csv_path": "x.csv"}, "data.label_column"),
        ({"data.text": "file"}, "data.text_path"),
    ],
)
def test_source_needs_its_path(default_params: dict, overrides: dict, key: str) -> None:
    assert f"{key} is required" in error_for(default_params, **overrides)


def test_bring_your_own_paths_validate(default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    set_key(params, "data.images", "folder")
    set_key(params, "data.images_dir", "/some/folder")
    set_key(params, "data.normal_label", [0, "7"])
    assert validate_params(params).data.normal_label == [0, "7"]


def test_load_params_reports_yaml_problems(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.yaml"
    with pytest.raises(ParamsError, match="not found"):
        load_params(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("base: [unclosed\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("base:\n  seed: 1\n  seed: 2\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="duplicate key 'seed'"):
        load_params(duplicate)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(scalar)


def test_the_committed_params_read_the_same_in_yaml_1_2_as_in_yaml_1_1(default_params) -> None:
    """The stages now read params as DVC does (YAML 1.2): the committed values, and so the
    pipeline's numbers, are what PyYAML (YAML 1.1) read."""
    assert read_yaml(REPO / "params.yaml") == default_params
