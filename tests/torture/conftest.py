"""Figures of a torture run: each test records its own, the summary prints them all
(copy them into docs/reliability.md after a full run)."""

from __future__ import annotations

import json
from typing import Any

import pytest

_FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture
def torture_figures(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Return the run's figures (part name -> figures) for a test to add its own to."""
    return request.config.stash.setdefault(_FIGURES, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the figures the torture tests recorded, one JSON line per part."""
    figures = config.stash.get(_FIGURES, {})
    if figures:
        terminalreporter.section("torture figures")
        for name, values in figures.items():
            terminalreporter.write_line(f"{name}: {json.dumps(values, sort_keys=True)}")
