"""The reliability suite's own plumbing: sizes and the marker."""

from __future__ import annotations

import pytest

import reliability_kit


def test_budget_picks_the_size_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reliability_kit, "LONG_RUN", False)
    assert reliability_kit.budget(3, 300) == 3
    monkeypatch.setattr(reliability_kit, "LONG_RUN", True)
    assert reliability_kit.budget(3, 300) == 300


def test_tests_here_carry_the_reliability_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("reliability") is not None
