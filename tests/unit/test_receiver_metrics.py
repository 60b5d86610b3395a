"""The receiver tallies answers and answer times in plain numbers on the hot path; a scrape
must show exactly what one Prometheus call per postback would have shown."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ingest.metrics import LATENCY_BUCKETS, ReceiverMetrics


def _lines(registry: CollectorRegistry, name: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith(f"{name}_created")
    ]


def test_answer_times_scrape_as_if_observed_one_by_one() -> None:
    # On and around every bucket bound (upper bounds are inclusive), and past the last.
    times = [0.0, 0.0004, *LATENCY_BUCKETS, 0.00051, 0.0011, 0.3, 7.5, 11.0, 60.0]
    metrics = ReceiverMetrics()
    reference = CollectorRegistry()
    expected = Histogram(
        "postbacks_http_request_seconds", "", buckets=LATENCY_BUCKETS, registry=reference
    )
    for seconds in times:
        metrics.accepted_in(seconds)
        expected.observe(seconds)
    name = "postbacks_http_request_seconds"
    assert f"{name}_count 0.0" in _lines(metrics.registry, name)  # not yet flushed
    metrics.flush()
    assert _lines(metrics.registry, name) == _lines(reference, name)
    assert f"{name}_count {float(len(times))}" in _lines(metrics.registry, name)


def test_flush_twice_counts_each_answer_once() -> None:
    metrics = ReceiverMetrics()
    reference = CollectorRegistry()
    expected = Counter("postbacks_http_requests", "", ["code"], registry=reference)
    for code in (200, 200, 503, 200, 400):
        metrics.answered(code)
        expected.labels(code=str(code)).inc()
    metrics.flush()
    metrics.accepted_in(0.002)
    metrics.flush()  # nothing new for the counter: it must not count again
    metrics.answered(200)
    expected.labels(code="200").inc()
    metrics.flush()
    name = "postbacks_http_requests_total"
    assert sorted(_lines(metrics.registry, name)) == sorted(_lines(reference, name))
    assert 'postbacks_http_requests_total{code="200"} 4.0' in _lines(metrics.registry, name)
    assert "postbacks_http_request_seconds_count 1.0" in _lines(
        metrics.registry, "postbacks_http_request_seconds"
    )
