"""Which ``params.yaml`` keys a stage reads: the evidence for each stage's ``params:`` in dvc.yaml.

DVC reruns a stage when a key under its ``params:`` changes, so a key a stage reads but does not
list leaves its results stale after ``dvc exp run -S key=...``, and a key it lists but never reads
reruns it for nothing. Run stages (``dvc repro`` or ``python -m stages.<name>``) with
``DL_LABS_PARAM_READS=<file>`` and ``PYTHONPATH=tests/param_reads`` (whose ``sitecustomize``
calls :func:`record` as each stage process starts): each appends one JSON line to the file, its
command line and the keys it read (``tests/test_dvc_yaml.py`` compares them with ``dvc.yaml``).

A key counts as read when a stage takes its value from the loaded params (an attribute of a
section), or dumps a section that holds it (``model_dump``: every key under it). Validation's own
reads do not count: rules that tie keys together decide whether the file is valid, not what a
stage computes.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path
from typing import Any


def leaves(section: Any, prefix: str = "") -> list[str]:
    """Every key under ``section``, dotted (``cnn.augment.flip``)."""
    from dllabs.params import Section

    keys = []
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Section):
            keys += leaves(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def record(log: str | Path) -> None:
    """Record this process's reads of loaded params, appended to ``log`` when it exits."""
    from dllabs import params

    where: dict[int, str] = {}  # id of each loaded section -> its dotted prefix
    keep: list[Any] = []  # the loaded params, alive so that no id is reused
    reads: set[str] = set()
    validate = params.validate_params
    get = params.Section.__getattribute__
    dump = params.Section.model_dump
    copy = params.Section.model_copy

    def place(section: Any, prefix: str) -> None:
        where[id(section)] = prefix
        for name in type(section).model_fields:
            value = get(section, name)
            if isinstance(value, params.Section):
                place(value, f"{prefix}{name}.")

    def validated(raw: Any, source: str = params.PARAMS_FILE) -> Any:
        loaded = validate(raw, source)
        keep.append(loaded)
        place(loaded, "")
        return loaded

    def recording_get(self: Any, name: str) -> Any:
        value = get(self, name)
        prefix = where.get(id(self))
        fields = type(self).model_fields
        if prefix is not None and name in fields and not isinstance(value, params.Section):
            reads.add(prefix + name)
        return value

    def recording_dump(self: Any, *args: Any, **kwargs: Any) -> Any:
        prefix = where.get(id(self))
        if prefix is not None:
            reads.update(prefix + key for key in leaves(self))
        return dump(self, *args, **kwargs)

    def recording_copy(self: Any, *args: Any, **kwargs: Any) -> Any:
        copied = copy(self, *args, **kwargs)
        prefix = where.get(id(self))
        if prefix is not None:
            keep.append(copied)
            place(copied, prefix)
        return copied

    params.validate_params = validated
    params.Section.__getattribute__ = recording_get
    params.Section.model_dump = recording_dump
    params.Section.model_copy = recording_copy

    def write() -> None:
        entry = {"argv": sys.argv[1:], "module": _module(), "keys": sorted(reads)}
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    atexit.register(write)


def _module() -> str:
    argv = getattr(sys, "orig_argv", [])
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
