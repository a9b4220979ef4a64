"""A started process settles its heap for the collector (`openpitrix.heap`): what it holds is
frozen out of the collections, and young collections come less often, as its settings say."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from openpitrix import heap
from openpitrix.settings import GcSettings, Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_defaults_freeze_the_heap_and_raise_the_young_threshold(restored_gc: None) -> None:
    settings = Settings().gc
    assert (settings.freeze_at_start, settings.young_threshold) == (True, 50_000)
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    heap.settle(settings)
    assert gc.get_freeze_count() > 0
    # The older generations keep their thresholds.
    assert gc.get_threshold() == (50_000, middle, old)


def test_off_leaves_the_collector_as_python_set_it(restored_gc: None) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    heap.settle(GcSettings(freeze_at_start=False, young_threshold=0))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENPITRIX_GC__YOUNG_THRESHOLD", "2000")
    monkeypatch.setenv("OPENPITRIX_GC__FREEZE_AT_START", "false")
    assert Settings().gc == GcSettings(freeze_at_start=False, young_threshold=2000)
