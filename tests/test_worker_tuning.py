"""The worker's concurrency settings: defaults, the environment, and a clear refusal of nonsense."""

from __future__ import annotations

import pytest

from worker import WorkerTuning


def test_defaults_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEPLOYFLOW_MAX_CONCURRENT_ACTIVITIES", "DEPLOYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS",
                 "DEPLOYFLOW_MAX_CACHED_WORKFLOWS"):
        monkeypatch.delenv(name, raising=False)
    assert WorkerTuning.from_env() == WorkerTuning()


def test_each_setting_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYFLOW_MAX_CONCURRENT_ACTIVITIES", "50")
    monkeypatch.setenv("DEPLOYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS", "20")
    monkeypatch.setenv("DEPLOYFLOW_MAX_CACHED_WORKFLOWS", "3000")
    assert WorkerTuning.from_env() == WorkerTuning(50, 20, 3000)


@pytest.mark.parametrize("value", ["0", "-3", "lots", "1.5"])
def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DEPLOYFLOW_MAX_CACHED_WORKFLOWS", value)
    with pytest.raises(SystemExit, match="DEPLOYFLOW_MAX_CACHED_WORKFLOWS must be a whole number"):
        WorkerTuning.from_env()
