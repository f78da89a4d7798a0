"""Activities: small, idempotent, one job each. The worker registers exactly `ALL_ACTIVITIES`."""

from collections.abc import Callable
from typing import Any

ALL_ACTIVITIES: list[Callable[..., Any]] = []

__all__ = ["ALL_ACTIVITIES"]
