"""The metrics the simulated apps and the simulator export, in the Prometheus text format (version 0.0.4).

Written by hand rather than with prometheus_client: the series are three fixed families, and the traffic
stream records thousands of requests per call, which a counter-per-request client API would make slow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RequestKey = tuple[str, str, str, str]  # namespace, service, version, code
SeriesKey = tuple[str, str, str]  # namespace, service, version


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))  # cumulative, like `le`
    count: int = 0
    total: float = 0.0


class Metrics:
    """Thread-safe counters for `http_requests_total`, `http_request_duration_seconds` and
    `sim_no_backend_requests_total`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[RequestKey, int] = {}
        self._durations: dict[SeriesKey, _Histogram] = {}
        self._no_backend: dict[tuple[str, str], int] = {}
        self._to_terminating: dict[tuple[str, str], int] = {}

    def record(self, namespace: str, service: str, version: str, code: int, n: int,
               low: float, high: float, u: float) -> None:
        """`n` requests with latencies spread uniformly over [low, high] seconds.

        Bucket counts use systematic sampling with offset `u` in [0, 1): unbiased for any n, monotone
        across buckets, and O(buckets) however many requests are recorded.
        """
        if n <= 0:
            return
        with self._lock:
            key = (namespace, service, version, str(code))
            self._requests[key] = self._requests.get(key, 0) + n
            hist = self._durations.setdefault((namespace, service, version), _Histogram())
            width = high - low
            for i, bound in enumerate(BUCKETS):
                if bound >= high:
                    frac = 1.0
                elif bound < low or width <= 0:
                    frac = 0.0
                else:
                    frac = (bound - low) / width
                hist.buckets[i] += min(n, int(n * frac + u))
            hist.count += n
            hist.total += n * (low + high) / 2

    def record_no_backend(self, namespace: str, service: str, n: int) -> None:
        self._add(self._no_backend, namespace, service, n)

    def record_to_terminating(self, namespace: str, service: str, n: int) -> None:
        """Requests sent to a pod already being deleted, because its endpoint was still listed."""
        self._add(self._to_terminating, namespace, service, n)

    def _add(self, table: dict[tuple[str, str], int], namespace: str, service: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            key = (namespace, service)
            table[key] = table.get(key, 0) + n

    # ---- reads ---------------------------------------------------------------------------------------

    def no_backend(self, namespace: str | None = None, service: str | None = None) -> int:
        return self._sum(self._no_backend, namespace, service)

    def to_terminating(self, namespace: str | None = None, service: str | None = None) -> int:
        return self._sum(self._to_terminating, namespace, service)

    def _sum(self, table: dict[tuple[str, str], int], namespace: str | None, service: str | None) -> int:
        with self._lock:
            return sum(
                n for (ns, svc), n in table.items()
                if (namespace is None or ns == namespace) and (service is None or svc == service)
            )

    def counts(self, namespace: str) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        with self._lock:
            for (ns, svc, version, code), n in self._requests.items():
                if ns == namespace:
                    out.setdefault(svc, {}).setdefault(version, {})[code] = n
        return out

    def text(self) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            durations = sorted((k, _Histogram(list(h.buckets), h.count, h.total)) for k, h in self._durations.items())
            no_backend = sorted(self._no_backend.items())
            to_terminating = sorted(self._to_terminating.items())
        lines = [
            "# HELP http_requests_total HTTP requests served by the simulated applications.",
            "# TYPE http_requests_total counter",
        ]
        for (ns, svc, version, code), n in requests:
            lines.append(f"http_requests_total{labels_text(namespace=ns, service=svc, version=version, code=code)} {n}")
        lines += [
            "# HELP http_request_duration_seconds Latency of HTTP requests served by the simulated applications.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for (ns, svc, version), hist in durations:
            base = {"namespace": ns, "service": svc, "version": version}
            for bound, n in zip(BUCKETS, hist.buckets, strict=True):
                lines.append(f"http_request_duration_seconds_bucket{labels_text(**base, le=_float(bound))} {n}")
            lines.append(f"http_request_duration_seconds_bucket{labels_text(**base, le='+Inf')} {hist.count}")
            lines.append(f"http_request_duration_seconds_sum{labels_text(**base)} {_float(hist.total)}")
            lines.append(f"http_request_duration_seconds_count{labels_text(**base)} {hist.count}")
        lines += [
            "# HELP sim_no_backend_requests_total Requests that found no ready endpoint behind the chosen Service.",
            "# TYPE sim_no_backend_requests_total counter",
        ]
        for (ns, svc), n in no_backend:
            lines.append(f"sim_no_backend_requests_total{labels_text(namespace=ns, service=svc)} {n}")
        lines += [
            "# HELP sim_requests_to_terminating_total Requests sent to a pod being deleted whose endpoint was still "
            "listed.",
            "# TYPE sim_requests_to_terminating_total counter",
        ]
        for (ns, svc), n in to_terminating:
            lines.append(f"sim_requests_to_terminating_total{labels_text(namespace=ns, service=svc)} {n}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _float(value: float) -> str:
    return repr(float(value))
