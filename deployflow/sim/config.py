"""Simulator settings and its clock."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class SimConfig:
    """Durations are in simulated seconds; `time_factor` simulated seconds pass per real second."""

    time_factor: float = 1.0
    ready_delay_seconds: float = 2.0  # from pod creation to Ready, unless the pod template says otherwise
    traffic_rps: float = 20.0  # synthetic requests per simulated second per traffic entry point
    tick_seconds: float = 0.05  # real seconds between controller passes
    seed: int = 0


class Clock:
    """Simulated time: real monotonic time scaled by the time factor, so demos run minutes in seconds."""

    def __init__(self, time_factor: float = 1.0) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0")
        self.time_factor = time_factor
        self._start_real = time.monotonic()

    def now(self) -> float:
        """Simulated seconds since the simulator started."""
        return (time.monotonic() - self._start_real) * self.time_factor

    def real_seconds(self, simulated: float) -> float:
        return simulated / self.time_factor
