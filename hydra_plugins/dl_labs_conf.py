"""``conf/`` checked before DVC's own Hydra composes it into ``params.yaml`` (``dvc exp run``).

DVC imports every module of ``hydra_plugins/`` under its ``hydra.plugins_path`` (the repository
root by default) just before it composes ``conf/`` (``dvc.utils.hydra.compose_and_dump``): the
place DVC documents for custom resolvers. This module adds no plugin. Importing it runs the checks
``make params`` runs (:func:`dllabs.tooling.presets.check_conf`: size, UTF-8, no anchors or
aliases, no resolver that reads the machine), so a crafted ``conf/`` cannot keep Hydra busy for
minutes, and replaces OmegaConf's ``oc.env`` with a resolver that refuses, so that an environment
variable named in an ``-S`` override is not recorded in ``params.yaml``, the experiment commit and
every remote it is pushed to. A refusal stops ``dvc exp run`` before ``params.yaml`` is written:
DVC prints ``ERROR: unexpected error - `` and the one line.
"""

from pathlib import Path

from omegaconf import OmegaConf

from dllabs.tooling.presets import check_conf, refuse_env

check_conf(Path(__file__).resolve().parents[1] / "conf")
OmegaConf.register_new_resolver("oc.env", refuse_env, replace=True)
