"""What each scenario injected and what it checked, collected for the end of the run.

Printed in pytest's terminal summary (so it shows without `-s`) and written to a file CI can keep as an artifact.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILE = Path(os.environ.get("DEPLOYFLOW_FAULT_REPORT", ".deployflow/fault-report.txt"))


@dataclass
class FaultReport:
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.lines += ["", f"== {title}"]

    def add(self, line: str) -> None:
        self.lines.append(f"  {line}")

    def render(self, outcome: str) -> list[str]:
        took = time.monotonic() - self.started
        return [*self.lines, "", f"fault suite {outcome} in {took:.0f}s ({took / 60:.1f} min; budget 20 min)"]

    def write(self, lines: list[str]) -> Path:
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        REPORT_FILE.write_text("\n".join(lines) + "\n")
        return REPORT_FILE.resolve()


REPORT = FaultReport()
