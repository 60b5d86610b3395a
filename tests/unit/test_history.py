"""The history's pure parts: RabbitMQ's x-max-age form, the settings, topic matching, and
what a worker's metrics say of the history (the bytes it appended, the limits)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ingest.history import (
    History,
    TopicFilter,
    check_max_age,
    max_age_seconds,
    topic_matches,
    words,
)
from ingest.settings import BadSetting, Settings
from worker.dedup import MemoryDedup
from worker.history import Refused, count_appended, parse_time, show_limits
from worker.metrics import WorkerMetrics
from worker.worker import Worker


@pytest.mark.parametrize("value", ["7D", "12h", "30m", "1Y", "2M", "10s", "07D", "1000Y"])
def test_rabbitmq_max_age_forms_are_taken(value: str) -> None:
    assert check_max_age(value) == value
    assert Settings.load({"HISTORY_MAX_AGE": value}).history_max_age == value


@pytest.mark.parametrize("value", ["0D", "7d", "1H", "7", "1W", "D", "-1D", "7 D", "1.5h"])
def test_other_max_ages_name_the_variable(value: str) -> None:
    with pytest.raises(BadSetting) as raised:
        Settings.load({"HISTORY_MAX_AGE": value})
    assert raised.value.variable == "HISTORY_MAX_AGE"


def test_max_age_seconds_count_as_rabbitmq_does() -> None:
    assert max_age_seconds("7D") == 7 * 86400
    assert max_age_seconds("1Y") == 365 * 86400
    assert max_age_seconds("1M") == 30 * 86400
    assert max_age_seconds("30m") == 1800


def test_history_is_off_unless_max_age_is_set() -> None:
    assert Settings.load({}).history is None
    history = Settings.load({"HISTORY_MAX_AGE": "7D"}).history
    assert history is not None
    assert history.arguments == {
        "x-queue-type": "stream",
        "x-max-age": "7D",
        "x-max-length-bytes": 20_000_000_000,
    }
    flags = {"HISTORY_MAX_AGE": "12h", "HISTORY_MAX_BYTES": "5000"}
    loaded = Settings.load({}, flags).history
    assert loaded is not None and loaded.max_bytes == 5000


@pytest.mark.parametrize("value", ["0", "-1", "lots", "1e9", str(2**63)])
def test_bad_max_bytes_name_the_variable(value: str) -> None:
    with pytest.raises(BadSetting) as raised:
        Settings.load({"HISTORY_MAX_AGE": "7D", "HISTORY_MAX_BYTES": value})
    assert raised.value.variable == "HISTORY_MAX_BYTES"


def test_words_split_as_rabbitmq_splits() -> None:
    assert words("") == ()
    assert words("a") == ("a",)
    assert words("a.") == ("a", "")
    assert words(".a") == ("", "a")
    assert words("a..b") == ("a", "", "b")


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "", True),
        ("#", "a.b.c", True),
        ("*", "", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("mms_mt.delivery.#", "mms_mt.delivery", True),
        ("mms_mt.delivery.#", "mms_mt.delivery.delivered.n102", True),
        ("mms_mt.delivery.#", "mms_mo.delivery.delivered.n102", False),
        ("#.failed.#", "mms_mt.delivery.failed.e101", True),
        ("#.failed.#", "failed", True),
        ("#.failed.#", "mms_mt.delivery.transcoding_failed.e002", False),
        ("#.n102", "mms_mt.delivery.delivered.n102", True),
        ("#.n102", "n102", True),
        ("*.*.*.n102", "mms_mt.delivery.delivered.n102", True),
        ("*.*.n102", "mms_mt.delivery.delivered.n102", False),
        ("a.#.#.b", "a.b", True),
        ("a.#.*.b", "a.b", False),
        ("a.#.*.b", "a.x.b", True),
        ("a.*.#", "a", False),
        ("a.*.#", "a.x", True),
        ("", "", True),
        ("", "a", False),
        ("a.", "a", False),
        ("a.", "a.", True),
        ("a.*", "a.", True),
        ("a#", "ab", False),
        ("a#", "a#", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_a_filter_matches_any_of_its_patterns() -> None:
    wanted = TopicFilter(["mms_mt.delivery.#", "#.n401", "#.n401"])
    assert wanted.patterns == ("mms_mt.delivery.#", "#.n401")
    assert wanted("mms_mo.inbound.received.n401")
    assert wanted("mms_mt.delivery.sent.n101")
    assert not wanted("mms_mt.template.transcoded.n003")
    assert not wanted("mms_mt.template.transcoded.n003")  # remembered answer


def test_times_are_iso_8601_utc_unless_an_offset_is_given() -> None:
    assert parse_time("2026-05-01", "--since") == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_time("2026-05-01T10:00:00Z", "--since") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2026-05-01T12:00+02:00", "--until") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    for bad in ("yesterday", "", "2026-13-01", "10:00"):
        with pytest.raises(Refused, match="not a time"):
            parse_time(bad, "--since")


def scraped(metrics: WorkerMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def test_the_bytes_of_each_appended_body_are_counted() -> None:
    metrics = WorkerMetrics()
    history = History("7D")
    assert scraped(metrics, "postbacks_history_appended_bytes_total") == 0
    count_appended(metrics, history, [b'{"event_id":"a"}', b"x" * 700])
    count_appended(metrics, history, [])  # a batch of duplicates only
    count_appended(metrics, history, (body for body in [b"", b"12345"]))
    assert scraped(metrics, "postbacks_history_appended_bytes_total") == 16 + 700 + 5


def test_without_history_nothing_is_counted_nor_read() -> None:
    metrics = WorkerMetrics()

    def bodies() -> Iterator[bytes]:
        raise AssertionError("read without history")
        yield b""

    count_appended(metrics, None, bodies())
    assert scraped(metrics, "postbacks_history_appended_bytes_total") == 0


def test_the_limits_are_the_settings_and_0_without_history() -> None:
    metrics = WorkerMetrics()
    show_limits(metrics, History("12h", 5_000_000))
    assert scraped(metrics, "postbacks_history_max_bytes") == 5_000_000
    assert scraped(metrics, "postbacks_history_max_age_seconds") == 12 * 3600
    off = WorkerMetrics()
    show_limits(off, None)
    assert scraped(off, "postbacks_history_max_bytes") == 0
    assert scraped(off, "postbacks_history_max_age_seconds") == 0


def test_a_worker_shows_the_limits_it_is_configured_with_from_the_start() -> None:
    metrics = WorkerMetrics()
    settings = Settings.load({"HISTORY_MAX_AGE": "1Y"})
    Worker(settings, MemoryDedup(60), metrics)
    assert scraped(metrics, "postbacks_history_max_bytes") == settings.history_max_bytes
    assert scraped(metrics, "postbacks_history_max_age_seconds") == 365 * 86400
