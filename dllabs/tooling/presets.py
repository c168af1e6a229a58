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

``conf/`` is refused before Hydra reads it where ``params.yaml`` could not be read from it
(:func:`check_conf`), and where it calls a resolver whose value comes from the machine composing
it rather than from ``conf/`` (``${oc.env:NAME}``, Hydra's ``${now:...}`` and ``${hydra:...}``):
DVC would record that value in ``params.yaml`` and in every experiment it commits and pushes.
``dvc exp run`` composes ``conf/`` with its own Hydra call; it first imports the modules of
``hydra_plugins/`` (DVC's place for custom resolvers), where ``hydra_plugins/dl_labs_conf.py``
runs :func:`check_conf` and puts :func:`refuse_env` in place of ``oc.env``, so the same refusals
stop ``dvc exp run`` before it writes ``params.yaml``. Hydra's ``now`` and ``hydra`` resolvers,
which Hydra registers again as it composes, are refused in ``conf/`` files but not in ``-S``
overrides there.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dllabs.errors import ParamsError, stage_errors
from dllabs.params import PARAMS_FILE, parse_yaml, read_yaml, validate_params

CONF_DIR = Path("conf")
CONFIG_NAME = "config"
GROUP = "dataset"
# The resolvers whose value depends on conf/ alone. Any other reads the machine that composes
# params.yaml (oc.env its environment, Hydra's now its clock, hydra its run), and its value would
# be recorded in params.yaml and in the experiment commits DVC pushes.
PURE_RESOLVERS = (
    "oc.select",
    "oc.create",
    "oc.decode",
    "oc.deprecated",
    "oc.dict.keys",
    "oc.dict.values",
)
# A resolver call anywhere in a value, quoted or escaped too: oc.decode resolves what it decodes.
_RESOLVER_CALL = re.compile(r"\$\{\s*([\w.\-]+)\s*:")


def preset_names(conf_dir: Path = CONF_DIR) -> list[str]:
    """The presets shipped in ``conf/dataset/``."""
    return sorted(path.stem for path in (conf_dir / GROUP).glob("*.yaml"))


def check_conf(conf_dir: Path = CONF_DIR) -> None:
    """Read each file of ``conf_dir`` as the stages read ``params.yaml``
    (:func:`dllabs.params.read_yaml`), before Hydra does: one over the size limit, not UTF-8, or
    holding anchors and aliases (the probe in ``tests/test_hostile_params.py``: 13 KB of nested
    ones took Hydra 39 s) is refused in one line with its file and line; so is a value that calls
    a resolver outside :data:`PURE_RESOLVERS`."""
    for path in sorted(Path(conf_dir).rglob("*.yaml")):
        _refuse_machine_reads(read_yaml(path), path)


def refuse_env(name: str, default: Any = None) -> Any:
    """A stand-in for OmegaConf's ``oc.env`` resolver that refuses, in one line: installed by
    ``hydra_plugins/dl_labs_conf.py`` for DVC's own composition, so that an environment variable
    in a ``-S`` override is not written into ``params.yaml`` and the experiment commit either."""
    raise ParamsError(
        f"${{oc.env:{name}}} reads the environment of the machine composing params.yaml; DVC "
        "would record its value in params.yaml and every experiment commit (pass the value itself)"
    )


def compose_yaml(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> str:
    """The composed params as the YAML text DVC writes (``dvc.utils.hydra.compose_and_dump``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    check_conf(conf_dir)
    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        _refuse_machine_reads(OmegaConf.to_container(cfg, resolve=False), conf_dir)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(
            f"{conf_dir}: cannot compose {' '.join(overrides) or 'the defaults'}: {first} "
            f"(presets: {', '.join(preset_names(conf_dir))})"
        ) from None
    return OmegaConf.to_yaml(cfg)


def _refuse_machine_reads(composed: Any, conf_dir: Path) -> None:
    """Refuse a value of ``composed`` (a conf file, or the composition of ``conf_dir`` and the
    overrides), still unresolved, that calls a resolver outside :data:`PURE_RESOLVERS`."""
    for key, value in _leaves(composed):
        for name in _RESOLVER_CALL.findall(value) if isinstance(value, str) else ():
            if name not in PURE_RESOLVERS:
                shown = value if len(value) <= 80 else value[:77] + "..."
                raise ParamsError(
                    f"{conf_dir}: {key} = {shown!r} calls {name}, whose value comes from the "
                    "machine composing params.yaml, not from conf/; DVC would record it in "
                    f"params.yaml and every experiment commit (write the value, or pass it with "
                    f"-S; conf/ may call {', '.join(PURE_RESOLVERS)})"
                )


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every value under ``node``, as ``a.b[0]``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, f"{prefix}[{index}]")
    else:
        yield prefix, node


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path = CONF_DIR) -> Any:
    """The composed params as a mapping, read as the stages will read it, checked against the
    schema."""
    source = f"{conf_dir} + {' '.join(overrides) or 'defaults'}"
    raw = parse_yaml(compose_yaml(overrides, conf_dir), source)
    validate_params(raw, source=source)
    return raw


def stale_params(
    params_file: Path = Path(PARAMS_FILE),
    conf_dir: Path = CONF_DIR,
    overrides: list[str] | tuple[str, ...] = (),
) -> str | None:
    """Why ``params_file`` is not the composition of ``conf_dir`` (with ``overrides``, the
    defaults without); None when it is."""
    if not conf_dir.is_dir():
        return None
    if not params_file.is_file():
        return f"{params_file} is missing; run `make params`"
    try:
        composed = compose_yaml(overrides, conf_dir).encode("utf-8")
    except ParamsError as exc:
        return f"cannot be checked: {exc}"
    with params_file.open("rb") as handle:  # bytes, and no more than can match
        written = handle.read(len(composed) + 1)
    if written != composed:
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
        source = " ".join(args.overrides) or "conf/"
        validate_params(parse_yaml(text, source), source=source)
        args.output.write_text(text, encoding="utf-8")
        print(f"presets: wrote {args.output} ({' '.join(args.overrides) or 'defaults'})")


if __name__ == "__main__":
    main()
