"""The test run's own machinery (tests/conftest.py): the tiers' markers, the order that lets the
quick pipeline build in the background, and each pytest-xdist worker's share of the cores."""

from __future__ import annotations

import os

import pytest

from tests import conftest

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


class Item:
    """What pytest_collection_modifyitems reads of a test: its fixtures and its markers."""

    def __init__(self, name: str, fixtures: tuple[str, ...] = (), markers: tuple[str, ...] = ()):
        self.name, self.fixturenames, self.markers = name, fixtures, set(markers)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.add(marker.name)


def test_pipeline_tests_run_last_in_their_order_and_long_ones_are_slow() -> None:
    items = [
        Item("a", ("reproduced_baseline",)),
        Item("b"),
        Item("c", markers=("long",)),
        Item("d", ("tmp_path", "reproduced_baseline")),
        Item("e"),
    ]
    conftest.pytest_collection_modifyitems(items)
    assert [item.name for item in items] == ["b", "c", "e", "a", "d"]
    assert {item.name for item in items if "slow" in item.markers} == {"a", "c", "d"}


@pytest.mark.parametrize("user_value", [None, "3"])
def test_each_worker_gets_its_share_of_the_cores(monkeypatch, user_value: str | None) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if user_value:
        monkeypatch.setenv("OMP_NUM_THREADS", user_value)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    conftest.share_the_cores()
    expected = {name: "2" for name in THREAD_VARIABLES}  # 8 cores // 3 workers
    if user_value:
        expected["OMP_NUM_THREADS"] = user_value  # the user's setting is kept
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == expected


def test_one_process_keeps_every_library_default(monkeypatch) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
    conftest.share_the_cores()
    assert not any(name in os.environ for name in THREAD_VARIABLES)
