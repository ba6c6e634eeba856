"""The one error the demo benchmark builder raises for what a user can fix."""

from __future__ import annotations

from ssp_detect.errors import SSPError


class DemoBuildError(SSPError, ValueError):
    """The demo benchmark cannot be built; ``str()`` is one sentence naming the cause and the fix."""
