"""What the real-cluster tests share beyond fixtures."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skips; under CI=true fails instead: CI creates the cluster, so a skip there would check nothing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI=true the real-cluster tier must run: {reason}")
    pytest.skip(reason)
