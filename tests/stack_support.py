"""Helpers for tests that run `deployflow dev` as a user does: a subprocess watched through /proc."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

READY_TIMEOUT = 90.0


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children of children included)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"deployflow dev exited with {proc.returncode} before {what}:\n{out}")
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"deployflow dev: {what} not reached within {timeout:.0f}s")


def deployflow_cmd() -> list[str]:
    return [sys.executable, "-m", "deployflow.cli"]
