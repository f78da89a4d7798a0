"""A real Prometheus for tests, the demo and the dev stack: scrapes the given targets every second.

The Debian `prometheus` package provides the binary (scripts/bootstrap.sh installs it); where it is missing,
`prometheus_binary()` returns None and callers skip or run without metrics.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx
import yaml


def prometheus_binary() -> str | None:
    """Path of the prometheus executable, or None. `DEPLOYFLOW_PROMETHEUS` overrides the search."""
    explicit = os.environ.get("DEPLOYFLOW_PROMETHEUS")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape_config(targets: Sequence[str], interval_seconds: float = 1.0) -> dict:
    """One scrape job per target URL (scheme, host:port and metrics path taken from the URL)."""
    jobs = []
    for i, target in enumerate(targets):
        url = urlsplit(target if "://" in target else f"http://{target}")
        jobs.append(
            {
                "job_name": f"target-{i}",
                "scheme": url.scheme or "http",
                "metrics_path": url.path or "/metrics",
                "scrape_interval": _duration(interval_seconds),
                "scrape_timeout": _duration(max(interval_seconds * 0.9, 0.5)),
                "static_configs": [{"targets": [url.netloc]}],
            }
        )
    return {
        "global": {"scrape_interval": _duration(interval_seconds), "evaluation_interval": _duration(interval_seconds)},
        "scrape_configs": jobs,
    }


def _duration(seconds: float) -> str:
    # Prometheus durations take whole units only ("900ms", not "0.9s").
    return f"{round(seconds * 1000)}ms"


class PrometheusServer:
    """A Prometheus process on a free loopback port; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        interval_seconds: float = 1.0,
        port: int | None = None,
        data_dir: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.targets = list(targets)
        self.interval_seconds = interval_seconds
        self.port = port or free_port()
        self.binary = binary or prometheus_binary()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="deployflow-prometheus-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if self.binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus, or run scripts/bootstrap.sh)")
        config = self.data_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.targets, self.interval_seconds)))
        (self.data_dir / "tsdb").mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=2h",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not become ready in {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-2000:]
        except OSError:
            return ""

    def query(self, promql: str) -> dict:
        """An instant query; returns the `data` part of the answer."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10.0)
        response.raise_for_status()
        data: dict = response.json()["data"]
        return data

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> dict:
        """Until the query returns a non-empty result (the first scrapes have landed)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.query(promql)
            if data.get("result"):
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"no series for {promql} after {timeout:.0f}s")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
