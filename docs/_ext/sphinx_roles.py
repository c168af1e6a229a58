"""A griffe extension for the docs build: Sphinx roles in docstrings as Markdown.

The library's docstrings are free prose that name other objects with Sphinx roles
(``:func:`fit_and_save```, ``:class:`~dllabs.data.readers.ImageFiles```). mkdocstrings reads
Markdown, so each role becomes a cross-reference to the object's entry in the API reference when
that entry exists (a public object with a docstring), and plain code otherwise: never a link that
the strict build could not resolve.

A role that names a project object that does not exist (a bare name, or one under ``dllabs`` or
``stages``) is a warning, which fails the strict build (``make docs``), naming the docstring's
object and the name: a docstring that names ``BLOCK_PREFIXES`` after it was renamed is wrong.
Dotted names outside the project (``keras.Model``) are shown as code.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`(?P<target>[^`]+)`")
PROJECT = ("dllabs", "stages")
# Under mkdocs' logger, so that mkdocs counts the warnings and --strict fails on them.
LOG = logging.getLogger("mkdocs.plugins.sphinx_roles")


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def _documented(obj: Any) -> bool:
    """Whether the reference renders ``obj``: it and every parent up to its module are public
    and have docstrings (``show_if_no_docstring: false``)."""
    while obj is not None and not obj.is_module:
        if obj.docstring is None or obj.name.startswith("_"):
            return False
        obj = obj.parent
    return obj is not None and _public(obj.path) and obj.path != "dllabs.__main__"


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring's Sphinx roles once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path not in PROJECT:
            return
        self._collection = loader.modules_collection
        self._rewrite(pkg)

    def _rewrite(self, obj: Any) -> None:
        if obj.is_alias:
            return
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(
                lambda m: self._markdown(m["target"], obj), obj.docstring.value
            )
        for member in obj.members.values():
            self._rewrite(member)

    def _resolve(self, target: str, where: Any) -> Any | None:
        candidates = [target]
        scope = where
        while scope is not None:
            candidates.append(f"{scope.path}.{target}")
            scope = scope.parent
        for path in candidates:
            try:
                found = self._collection.get_member(path)
            except (
                KeyError,
                ValueError,
                AttributeError,
                griffe.AliasResolutionError,
                griffe.CyclicAliasError,
            ):
                continue
            try:
                return found.final_target if found.is_alias else found
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
        return None

    def _markdown(self, written: str, where: Any) -> str:
        target = written.lstrip("~!")
        shown = target.rsplit(".", 1)[-1] if written.startswith("~") else target
        obj = self._resolve(target, where)
        if obj is None and ("." not in target or target.split(".")[0] in PROJECT):
            LOG.warning("%s: its docstring names %s, which does not exist", where.path, written)
        if obj is not None and _documented(obj):
            return f"[`{shown}`][{obj.path}]"
        return f"`{shown}`"
