"""Prometheus metrics of one server (own registry, so several apps can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServeMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("lgc_serve_requests", "Infer requests by model and outcome",
                                ["model", "outcome"], registry=self.registry)
        self.latency = Histogram("lgc_serve_request_latency_seconds",
                                 "Infer request latency, arrival to response, by outcome class",
                                 ["model", "outcome"], registry=self.registry,
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5,
                                          1, 2, 5, 10, 30))
        self.queue_depth = Gauge("lgc_serve_queue_depth", "Requests waiting for a batch",
                                 ["model"], registry=self.registry)
        self.batch_rows = Histogram("lgc_serve_batch_size", "Rows (axis 0) per backend call",
                                    ["model"], registry=self.registry,
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128))
        self.batch_requests = Histogram("lgc_serve_batch_requests", "Requests per backend call",
                                        ["model"], registry=self.registry,
                                        buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64))
        self.infer_seconds = Histogram("lgc_serve_backend_seconds",
                                       "Time in Backend.infer per batch", ["model"],
                                       registry=self.registry)

    def observe_request(self, model: str, outcome: str, seconds: float) -> None:
        self.requests.labels(model, outcome).inc()
        self.latency.labels(model, outcome).observe(seconds)

    def batch_observer(self, model: str):
        def observe(rows: int, requests: int, seconds: float) -> None:
            self.batch_rows.labels(model).observe(rows)
            self.batch_requests.labels(model).observe(requests)
            self.infer_seconds.labels(model).observe(seconds)
        return observe
