"""A worker's Prometheus metrics, in their own registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.metrics import BATCH_BUCKETS, LATENCY_BUCKETS

PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "postbacks_events",
            "Events published to the events exchange, by origin, family and status.",
            ["origin", "family", "status"],
            registry=r,
        )
        self.duplicates = Counter(
            "postbacks_duplicates_dropped",
            "Postbacks dropped as duplicates of an event.",
            registry=r,
        )
        self.republished = Counter(
            "postbacks_events_republished",
            "Events published again from a redelivered intake message whose earlier delivery "
            "claimed them: they may have been published already (the node died during the "
            "commit or, on a cluster, before the acks), so subscribers may see this event id "
            "twice (same message_id). Counted when sent.",
            registry=r,
        )
        self.lifecycle_seconds = Histogram(
            "postbacks_lifecycle_seconds",
            "Latency of one lifecycle-store round trip (a batch's steps).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stale = Counter(
            "postbacks_stale_events",
            "Events published as stale: their lifecycle was already final (an N101 after "
            "its N102, say).",
            registry=r,
        )
        self.timeouts = Counter(
            "postbacks_timeouts",
            "timed_out events published: lifecycles with no final status DLR_TIMEOUT "
            "seconds after their first event, by family.",
            ["family"],
            registry=r,
        )
        self.timers_pending = Gauge(
            "postbacks_timers_pending_messages",
            "Receipt timers waiting for their DLR_TIMEOUT, as this worker last saw it.",
            registry=r,
        )
        self.quarantined = Counter(
            "postbacks_quarantined",
            "Postbacks moved to the quarantine queue, by kind (invalid: not a postback; "
            "poison: the worker failed on it repeatedly).",
            ["kind"],
            registry=r,
        )
        self.dedup_seconds = Histogram(
            "postbacks_dedup_seconds",
            "Latency of one dedup-store round trip.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "postbacks_event_commit_seconds",
            "Time to publish a batch of events and commit it with the intake acks.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.processing_seconds = Histogram(
            "postbacks_processing_seconds",
            "From received_at (the receiver accepted it) to its event being committed.",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.batch_postbacks = Histogram(
            "postbacks_worker_batch_postbacks",
            "Postbacks handled in one worker transaction.",
            buckets=(*BATCH_BUCKETS, 1024, 2048, 4096),
            registry=r,
        )
        self.intake_depth = Gauge(
            "postbacks_intake_queue_messages",
            "Messages ready in the intake queue, as this worker last saw it "
            "(one message carries one or more postbacks).",
            registry=r,
        )
        self.quarantine_depth = Gauge(
            "postbacks_quarantine_queue_messages",
            "Messages in the quarantine queue, as this worker last saw it "
            "(postbacks waiting for a fix and `postbacks replay`).",
            registry=r,
        )
        self.history_appended_bytes = Counter(
            "postbacks_history_appended_bytes",
            "Bytes of the event bodies published while the history is on (HISTORY_MAX_AGE "
            "set): each is appended to NS.history, which stores it with its properties and "
            "headers (up to 1.5 times the body on disk).",
            registry=r,
        )
        self.history_max_bytes = Gauge(
            "postbacks_history_max_bytes",
            "HISTORY_MAX_BYTES: the most NS.history keeps, in bytes; 0 without history.",
            registry=r,
        )
        self.history_max_age_seconds = Gauge(
            "postbacks_history_max_age_seconds",
            "HISTORY_MAX_AGE in seconds: how long NS.history keeps events; 0 without history.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "postbacks_dependency_up",
            "1 while a dependency answers, else 0.",
            ["dependency"],
            registry=r,
        )
