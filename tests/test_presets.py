"""Dataset presets: conf/ composed into params.yaml, one switch per dataset, keys overridable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dllabs.errors import ParamsError
from dllabs.models.builders import PixelStats, build_cnn, build_mlp
from dllabs.params import CNN, MLP, Base, validate_params
from dllabs.tooling.presets import compose, compose_yaml, preset_names, stale_params
from dllabs.training.devices import setup_run
from dllabs.training.fit import fit
from tests.helpers.repo import DVC, REPO, copy_of, sh

CONF = REPO / "conf"
FOLDER = "data.images_dir=/photos"  # the photos preset needs the user's folder
PRESETS = ["cifar10", "digits", "fashion_mnist", "mnist", "photos"]
SHAPES = {"digits": (8, 8), "mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32)}


def test_the_shipped_presets() -> None:
    assert preset_names(CONF) == PRESETS


def test_params_yaml_is_the_default_composition() -> None:
    """`dvc repro` reads params.yaml; `dvc exp run` rewrites it from conf/: the two must agree."""
    assert stale_params(REPO / "params.yaml", CONF) is None
    assert compose([], CONF)["data"]["preset"] == "digits"


def test_a_hand_edited_params_yaml_is_reported(tmp_path: Path) -> None:
    shutil.copytree(CONF, tmp_path / "conf")
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("seed: 42", "seed: 7"))
    assert "not the composition of" in stale_params(params, tmp_path / "conf")
    params.unlink()
    assert "missing" in stale_params(params, tmp_path / "conf")


def test_a_refused_conf_or_unreadable_params_is_a_reason_not_a_traceback(tmp_path: Path) -> None:
    """`--stale` (make check-reproducible) reports these as it reports a stale params.yaml."""
    shutil.copytree(CONF, tmp_path / "conf")
    params = tmp_path / "params.yaml"
    params.write_bytes(b"\xff\xfe" + (REPO / "params.yaml").read_bytes())  # not UTF-8
    assert "not the composition of" in stale_params(params, tmp_path / "conf")
    with (tmp_path / "conf" / "config.yaml").open("a", encoding="utf-8") as config:
        config.write("extra: ${oc.env:HOME}\n")
    reason = stale_params(params, tmp_path / "conf")
    assert reason.startswith("cannot be checked: ") and "extra = '${oc.env:HOME}' calls oc.env" in (
        reason
    )


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_composes_valid_params_that_name_it(name: str) -> None:
    params = compose([f"dataset={name}", FOLDER], CONF)
    validate_params(params)
    assert params["data"]["preset"] == name
    # read as DVC and the stages read it (YAML 1.2), the same values as PyYAML's YAML 1.1
    assert params == yaml.safe_load(compose_yaml([f"dataset={name}", FOLDER], CONF))
    expected_source = "folder" if name == "photos" else name
    assert params["data"]["images"] == expected_source


def test_a_preset_overrides_config_and_a_key_overrides_the_preset() -> None:
    default, photos = compose([], CONF), compose(["dataset=photos", FOLDER], CONF)
    assert photos["data"]["image_size"] != default["data"]["image_size"]
    assert photos["mlp"]["input_size"] is not None and default["mlp"]["input_size"] is None
    assert photos["cbow"] == default["cbow"]  # a dataset preset leaves the text lab alone
    tried = compose(["dataset=photos", "mlp.learning_rate=0.5", FOLDER], CONF)
    assert tried["mlp"]["learning_rate"] == 0.5 and tried["data"]["images_dir"] == "/photos"
    assert tried["cnn"] == photos["cnn"]


def test_an_unknown_preset_or_key_or_a_missing_folder_is_one_clear_error() -> None:
    with pytest.raises(ParamsError, match=r"data\.images_dir is required"):
        compose(["dataset=photos"], CONF)
    with pytest.raises(ParamsError, match=r"dataset=imagenet.*presets: cifar10, digits"):
        compose(["dataset=imagenet"], CONF)
    with pytest.raises(ParamsError, match=r"mlp\.learnig_rate"):
        compose(["mlp.learnig_rate=0.1"], CONF)


def test_the_command_writes_params_and_refuses_a_bad_preset(tmp_path: Path) -> None:
    out = tmp_path / "params.yaml"
    run = [sys.executable, "-m", "dllabs.tooling.presets", "--output", str(out)]
    done = subprocess.run([*run, "dataset=mnist"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "preset: mnist" in out.read_text()
    bad = subprocess.run([*run, "dataset=nope"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("presets: error:") and "nope" in bad.stderr


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_builds_and_trains_a_step(name: str) -> None:
    """The preset's MLP and CNN at its dataset's image size, one epoch on eight random images."""
    params = compose([f"dataset={name}", FOLDER], CONF)
    data = params["data"]
    height, width = SHAPES.get(data["images"], data["image_size"])
    channels = 3 if data["images"] == "cifar10" else 1
    if data["images"] == "folder":
        channels = 3 if data["color_mode"] == "rgb" else 1
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, height, width, channels), dtype=np.uint8)
    y = np.arange(8) % 2
    device = setup_run(Base(**{**params["base"], "device": "cpu"}))
    for section, params_type, builder in (("mlp", MLP, build_mlp), ("cnn", CNN, build_cnn)):
        lab = params_type(**{**params[section], "epochs": 1, "batch_size": 4})
        model = builder(x.shape[1:], 2, lab, PixelStats.of(x))
        result = fit(model, (x, y), (x, y), lab, device, None, verbose=0, params_key=section)
        assert result.epochs_trained == 1 and np.isfinite(result.best_val_loss)
        assert model.predict(x, verbose=0).shape == (8, 2)


@pytest.mark.slow
def test_dvc_params_diff_shows_what_a_preset_changes(
    reproduced_baseline: Path, tmp_path: Path
) -> None:
    """The switch in a repository: make params PRESET=photos, then dvc params diff lists the
    values the preset changed (and only those)."""
    repo = copy_of(reproduced_baseline, tmp_path / "repo")
    sh([sys.executable, "-m", "dllabs.tooling.presets", "dataset=photos", FOLDER], repo)
    diff = json.loads(sh([*DVC, "params", "diff", "--json"], repo).stdout)["params.yaml"]
    assert diff["data.preset"] == {"old": "digits", "new": "photos"}
    assert diff["data.images"] == {"old": "digits", "new": "folder"}
    assert "mlp.input_size" in diff and "cnn.augment.flip" in diff
    assert not any(key.startswith(("cbow.", "tokenize.", "anomaly.")) for key in diff)


def test_the_photos_preset_transfers_from_imagenet_offline_a_step_each_phase() -> None:
    """Lab 5 as the photos preset sets it: the installed EfficientNet-Lite0 at the photos' size,
    frozen parts computed once (no augmentation), then blocks 14-15 fine-tuned."""
    from dllabs.labs.transfer import (
        build_transfer_model,
        cached_training,
        load_base,
        set_trainable_top,
    )

    params = validate_params(compose(["dataset=photos", FOLDER], CONF))
    t = params.transfer
    assert (t.base, t.weights, t.target_train_size) == ("efficientnet_lite0", "imagenet", "all")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, *params.data.image_size, 3), dtype=np.uint8)
    y = np.arange(8) % 2
    device = setup_run(params.base.model_copy(update={"device": "cpu"}))
    base = load_base(t, "unused", params.cnn, x.shape[1:])
    model = build_transfer_model(base, x.shape[1:], 2, t)
    cuts = []
    for unfreeze, phase in (
        (t.trainable_base_layers, t.feature_extraction),
        (t.fine_tune.unfreeze, t.fine_tune),
    ):
        set_trainable_top(base, unfreeze, "k")
        split = cached_training(model, base, t)
        cached = split.prefix.predict(x, verbose=0)
        one_step = phase.model_copy(update={"epochs": 1, "batch_size": 8})
        result = fit(split.rest, (cached, y), (cached, y), one_step, device, None, verbose=0)
        assert result.epochs_trained == 1 and np.isfinite(result.best_val_loss)
        cuts.append((split.cut, cached.shape[1:]))
    assert cuts == [("pool", (1280,)), ("efficientnet_lite0/block13_add", (7, 7, 192))]
    assert model.predict(x, verbose=0).shape == (8, 2)
