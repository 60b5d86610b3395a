"""The receiver's Prometheus metrics, in their own registry (no global state)."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ReceiverMetrics:
    """The receiver's metrics. The two that move with every postback (answers by code, time
    to answer) are tallied in plain numbers on the hot path and folded into their Prometheus
    series by :meth:`flush`, which ``/metrics`` calls before it renders."""

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
        self._answers: dict[int, int] = {}
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._latency_sum = 0.0

    def answered(self, code: int) -> None:
        self._answers[code] = self._answers.get(code, 0) + 1

    def accepted_in(self, seconds: float) -> None:
        """One accepted postback's time to answer (what ``request_seconds`` observes)."""
        self._latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def flush(self) -> None:
        """Fold the hot-path tallies into the Prometheus series."""
        answers, self._answers = self._answers, {}
        for code, count in answers.items():
            self.requests.labels(code=str(code)).inc(count)
        counts, self._latency_counts = self._latency_counts, [0] * len(self._latency_counts)
        total, self._latency_sum = self._latency_sum, 0.0
        if any(counts):
            # The same effect as one observe() per postback: prometheus_client's Histogram
            # keeps one value per bucket (upper bound inclusive) and one for the sum.
            histogram = self.request_seconds
            for bucket, count in zip(histogram._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)
            histogram._sum.inc(total)
