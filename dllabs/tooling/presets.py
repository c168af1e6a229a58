"""Dataset presets: ``params.yaml`` is ``conf/config.yaml`` composed with one ``conf/dataset/*``.

Good hyperparameters differ between 8x8 digits, MNIST, CIFAR-10 and a folder of photos, so each
dataset has a preset that sets its source and the values tuned for it, and one switch selects it:
``dvc exp run -S dataset=photos``. This is DVC's own Hydra composition (``hydra.enabled`` in
``.dvc/config``): on every ``dvc exp run`` DVC composes ``conf/`` with the ``-S`` overrides and
writes the result to ``params.yaml``, so ``dvc params diff`` and ``dvc exp show`` show every value
a preset changed, and ``-S key=value`` still overrides any single key. ``dvc repro`` reads
``params.yaml`` as it is: ``python -m dllabs.tooling.presets [OVERRIDE ...]`` (``make params``)
writes the same composition for it, byte for byte what DVC writes, and ``python -m
dllabs.tooling.reproducibility --stale`` fails when the committed ``params.yaml`` is not the
composition of ``conf/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from dllabs.errors import ParamsError, stage_errors
from dllabs.params import PARAMS_FILE, validate_params

CONF_DIR = Path("conf")
CONFIG_NAME = "config"
GROUP = "dataset"


def preset_names(conf_dir: Path = CONF_DIR) -> list[str]:
    """The presets shipped in ``conf/dataset/``."""
    return sorted(path.stem for path in (conf_dir / GROUP).glob("*.yaml"))


def compose_yaml(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> str:
    """The composed params as the YAML text DVC writes (``dvc.utils.hydra.compose_and_dump``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(
            f"{conf_dir}: cannot compose {' '.join(overrides) or 'the defaults'}: {first} "
            f"(presets: {', '.join(preset_names(conf_dir))})"
        ) from None
    return OmegaConf.to_yaml(cfg)


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> Any:
    """The composed params as a mapping, checked against the schema."""
    raw = yaml.safe_load(compose_yaml(overrides, conf_dir))
    validate_params(raw, source=f"{conf_dir} + {' '.join(overrides) or 'defaults'}")
    return raw


def stale_params(params_file: Path = Path(PARAMS_FILE), conf_dir: Path = CONF_DIR) -> str | None:
    """Why ``params_file`` is not the default composition of ``conf_dir``; None when it is."""
    if not conf_dir.is_dir():
        return None
    if not params_file.is_file():
        return f"{params_file} is missing; run `make params`"
    if params_file.read_text(encoding="utf-8") != compose_yaml((), conf_dir):
        return (
            f"{params_file} is not the composition of {conf_dir}/ (edit {conf_dir}/config.yaml, "
            "not params.yaml, then run `make params`)"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dllabs.tooling.presets",
        description="Write params.yaml: conf/config.yaml composed with a dataset preset, as "
        "`dvc exp run` does, for `dvc repro`.",
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides as for `dvc exp run -S`: dataset=photos"
    )
    parser.add_argument("--output", type=Path, default=Path(PARAMS_FILE))
    args = parser.parse_args(argv)
    with stage_errors("presets"):
        text = compose_yaml(args.overrides)
        validate_params(yaml.safe_load(text), source=" ".join(args.overrides) or "conf/")
        args.output.write_text(text, encoding="utf-8")
        print(f"presets: wrote {args.output} ({' '.join(args.overrides) or 'defaults'})")


if __name__ == "__main__":
    main()
