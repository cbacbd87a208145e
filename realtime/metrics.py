"""A small thread-safe Prometheus registry (text exposition format 0.0.4).

Counters and gauges with labels and one histogram; enough for the realtime service without
an extra dependency.
"""
from __future__ import annotations

import bisect
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()):
        self.name, self.doc, self.label_names = name, doc, tuple(labels)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels.get(n, "")) for n in self.label_names)

    def value(self, **labels) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, v in items:
            lines.append(f"{self.name}{_labels(self.label_names, key)} {v:g}")
        return lines


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, **labels) -> None:
        with self._lock:
            self._values[self._key(labels)] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = (), buckets=()):
        super().__init__(name, doc, labels)
        self.buckets = tuple(sorted(buckets))
        self._hist: dict[tuple[str, ...], list] = {}

    def observe(self, value: float, **labels) -> None:
        key = self._key(labels)
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [[0] * len(self.buckets), 0, 0.0]
            if i < len(self.buckets):
                h[0][i] += 1
            h[1] += 1
            h[2] += value

    def count(self, **labels) -> int:
        h = self._hist.get(self._key(labels))
        return h[1] if h else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, ([*v[0]], v[1], v[2])) for k, v in self._hist.items())
        for key, (counts, total, s) in items:
            cumulative = 0
            for bound, c in zip(self.buckets, counts):
                cumulative += c
                lab = _labels(self.label_names + ("le",), key + (f"{bound:g}",))
                lines.append(f"{self.name}_bucket{lab} {cumulative}")
            lab = _labels(self.label_names + ("le",), key + ("+Inf",))
            lines.append(f"{self.name}_bucket{lab} {total}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {total}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {s:g}")
        return lines


class Metrics:
    """The realtime service's metrics; one instance per service."""

    def __init__(self):
        self.instances = Counter("axiom_instances_received_total", "Instances landed, by listener", ("listener",))
        self.bytes = Counter("axiom_bytes_received_total", "Bytes landed (Part 10 file sizes), by listener", ("listener",))
        self.failures = Counter("axiom_ingest_failures_total", "Instances refused, by listener and reason", ("listener", "reason"))
        self.associations_open = Gauge("axiom_associations_open", "DICOM associations currently open, by listener", ("listener",))
        self.associations = Counter("axiom_associations_total", "DICOM associations, by listener and outcome", ("listener", "outcome"))
        self.landing_seconds = Histogram(
            "axiom_landing_seconds", "Time to land one instance durably (write, fsync, rename, ledger)", ("listener",),
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.http_requests = Counter("axiom_http_requests_total", "HTTP requests, by route and status", ("route", "status"))
        self._all = [self.instances, self.bytes, self.failures, self.associations_open, self.associations,
                     self.landing_seconds, self.http_requests]

    def render(self) -> str:
        lines: list[str] = []
        for m in self._all:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
