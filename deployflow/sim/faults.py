"""API-level faults, set at runtime: what a flaky apiserver or a busy control plane does to its clients.

Activities must survive 500s, 503s, 429s, slow answers and optimistic-concurrency conflicts; tests turn these on
with `sim.faults.set(...)`. Draws come from a seeded generator so a failing run can be replayed.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """What to do to one request: wait `delay` seconds, then answer `code` (None: serve it normally)."""

    delay: float = 0.0
    code: int | None = None


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self.error_rate = 0.0
        self.codes: tuple[int, ...] = (500, 503, 429)
        self.latency_seconds = 0.0
        self.conflict_rate = 0.0
        self.injected = 0

    def set(
        self,
        error_rate: float = 0.0,
        codes: tuple[int, ...] | list[int] = (500, 503, 429),
        latency_seconds: float = 0.0,
        conflict_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        """Replaces the fault settings; `seed` restarts the draws so the same requests fail again."""
        for name, rate in (("error_rate", error_rate), ("conflict_rate", conflict_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if latency_seconds < 0:
            raise ValueError(f"latency_seconds must be >= 0, got {latency_seconds}")
        if error_rate and not codes:
            raise ValueError("codes must not be empty when error_rate > 0")
        with self._lock:
            self.error_rate = error_rate
            self.codes = tuple(codes)
            self.latency_seconds = latency_seconds
            self.conflict_rate = conflict_rate
            if seed is not None:
                self._seed = seed
            self._rng = random.Random(self._seed)

    def clear(self) -> None:
        self.set()

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_seconds or self.conflict_rate)

    def draw(self, write: bool) -> Fault:
        """The fault for one request; conflicts only hit writes, since reads cannot conflict."""
        with self._lock:
            if not self.active:
                return Fault()
            code: int | None = None
            if self.error_rate and self._rng.random() < self.error_rate:
                code = self._rng.choice(self.codes)
            elif write and self.conflict_rate and self._rng.random() < self.conflict_rate:
                code = 409
            if code is not None:
                self.injected += 1
            return Fault(self.latency_seconds, code)
