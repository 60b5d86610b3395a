"""The receiver's Prometheus metrics, in their own registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "postbacks_http_requests",
            "Postback requests answered, by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.confirm_seconds = Histogram(
            "postbacks_intake_confirm_seconds",
            "Time from publishing a batch into the intake queue to the broker's confirm.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_postbacks = Histogram(
            "postbacks_intake_batch_postbacks",
            "Postbacks sharing one intake message and one confirm (group commit).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.spooled = Counter(
            "postbacks_spooled",
            "Postbacks answered 200 from the local spool because the broker could not confirm.",
            registry=self.registry,
        )
        self.spool_pending = Gauge(
            "postbacks_spool_pending_postbacks",
            "Postbacks in the local spool waiting to be forwarded to the broker.",
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "postbacks_broker_up",
            "1 while the link to RabbitMQ is up, else 0.",
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "postbacks_http_request_seconds",
            "Time to answer a postback, from the body read to the answer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
