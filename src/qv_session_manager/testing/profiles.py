"""Hypothesis profiles shipped with the conformance kit.

Importing :mod:`qv_session_manager.testing` registers them; choose one with
``HYPOTHESIS_PROFILE`` (or ``pytest --hypothesis-profile`` from a conftest that
imports the kit):

- ``qv-default``: 60 examples per property;
- ``qv-ci``: 150 examples, the bounded run for CI;
- ``qv-deep``: 2000 examples, for a long hunt;
- ``qv-no-shrink``: 60 examples and no shrinking (nor explaining), for stores over a
  network, where shrinking a failure can take minutes before it is reported; the
  failure is shown as found.

Each sets only ``max_examples``, ``deadline=None``, the health checks that
function-scoped fixtures and slow stores trip, and for ``qv-no-shrink`` the
phases; every other setting comes from the profile active when the kit is imported.
The names start with ``qv-`` so that none replaces a profile of your own, and the
kit loads one only when ``HYPOTHESIS_PROFILE`` names it: your own choice of
profile stands otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import InvalidArgument

#: The variable naming the profile to load (the one Hypothesis users already set).
PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
_CHECKS = (HealthCheck.too_slow, HealthCheck.function_scoped_fixture)
_NO_SHRINK = tuple(phase for phase in Phase if phase not in (Phase.shrink, Phase.explain))

#: Profile name -> the settings it sets.
PROFILES: dict[str, dict[str, Any]] = {
    "qv-default": {"max_examples": 60},
    "qv-ci": {"max_examples": 150, "derandomize": False},
    "qv-deep": {"max_examples": 2000},
    "qv-no-shrink": {"max_examples": 60, "phases": _NO_SHRINK},
}


def register_profiles() -> None:
    """Register each profile of :data:`PROFILES` that no one has registered yet.

    A profile already registered under one of these names (by an earlier call, or
    by you) is kept as it is.
    """
    for name, values in PROFILES.items():
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(name, deadline=None, suppress_health_check=_CHECKS, **values)


def load_chosen_profile() -> str | None:
    """Load the kit's profile that ``HYPOTHESIS_PROFILE`` names; None (nothing loaded) otherwise."""
    chosen = os.environ.get(PROFILE_VARIABLE)
    if chosen not in PROFILES:
        return None
    settings.load_profile(chosen)
    return chosen
