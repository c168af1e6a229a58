"""The test run's own machinery (tests/conftest.py): the tiers' markers, the order that lets the
quick pipeline build in the background, and each pytest-xdist worker's share of the cores."""

from __future__ import annotations

import os

import pytest

from tests import conftest

THREAD_VARIABLES = conftest.THREAD_VARIABLES


class Item:
    """What pytest_collection_modifyitems reads of a test: its fixtures and its markers."""

    def __init__(self, name: str, fixtures: tuple[str, ...] = (), markers: tuple[str, ...] = ()):
        self.name, self.nodeid = name, name
        self.fixturenames, self.markers = fixtures, set(markers)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.add(marker.name)


def test_pipeline_tests_run_last_in_their_order() -> None:
    items = [
        Item("a", ("reproduced_baseline",), markers=("slow",)),
        Item("b"),
        Item("c", markers=("long",)),
        Item("d", ("tmp_path", "reproduced_baseline"), markers=("long",)),
        Item("e"),
    ]
    conftest.pytest_collection_modifyitems(items)
    assert [item.name for item in items] == ["b", "c", "e", "a", "d"]
    assert {item.name for item in items if item.markers} == {"a", "c", "d"}  # none added


def test_a_pipeline_test_not_marked_slow_stops_the_collection_naming_it() -> None:
    items = [
        Item("a", ("reproduced_baseline",), markers=("slow",)),
        Item("b", ("reproduced_baseline",)),
    ]
    with pytest.raises(pytest.UsageError, match=r"marked neither slow nor long: b$"):
        conftest.pytest_collection_modifyitems(items)


@pytest.mark.parametrize("user_value", [None, "3"])
def test_each_worker_gets_its_share_of_the_cores(user_value: str | None) -> None:
    env = {"PYTEST_XDIST_WORKER_COUNT": "3"}
    if user_value:
        env["OMP_NUM_THREADS"] = user_value
    conftest.share_the_cores(env, cores=8)
    expected = {name: "2" for name in THREAD_VARIABLES}  # 8 cores // 3 workers
    if user_value:
        expected["OMP_NUM_THREADS"] = user_value  # the user's setting is kept
    assert {name: env.get(name) for name in THREAD_VARIABLES} == expected


def test_one_process_keeps_every_library_default() -> None:
    env = {"PYTEST_XDIST_WORKER_COUNT": "1"}
    conftest.share_the_cores(env, cores=8)
    assert env == {"PYTEST_XDIST_WORKER_COUNT": "1"}


def test_sharing_the_cores_in_a_test_leaves_this_process_alone() -> None:
    """A test of the sharing sets nothing in this process, where the variables would stay for the
    rest of a serial run (``monkeypatch.delenv(raising=False)`` records nothing to undo for a
    variable that was absent)."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    conftest.share_the_cores({"PYTEST_XDIST_WORKER_COUNT": "4"}, cores=8)
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before
