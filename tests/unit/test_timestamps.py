"""Sinch's timestamps become UTC ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``; other text stays."""

from __future__ import annotations

import pytest

from ingest.event import utc_timestamp

from ._support import event_of


@pytest.mark.parametrize(
    ("sent", "utc"),
    [
        # The offsets Sinch uses, and their variants.
        ("2014-06-07T07:27:29-05:00", "2014-06-07T12:27:29Z"),
        ("2014-06-07T07:27:29-0500", "2014-06-07T12:27:29Z"),
        ("2014-06-07T07:27:29+02:00", "2014-06-07T05:27:29Z"),
        ("2014-06-07T07:27:29+0200", "2014-06-07T05:27:29Z"),
        ("2014-06-07T07:27:29+05:30", "2014-06-07T01:57:29Z"),
        ("2014-06-07T07:27:29-09:30", "2014-06-07T16:57:29Z"),
        ("2014-06-07T07:27:29+00:00", "2014-06-07T07:27:29Z"),
        ("2014-06-07T07:27:29-00:00", "2014-06-07T07:27:29Z"),
        ("2014-06-07T07:27:29Z", "2014-06-07T07:27:29Z"),
        ("2026-04-24T18:30:00Z", "2026-04-24T18:30:00Z"),
        # No offset means UTC.
        ("2014-06-07T07:27:29", "2014-06-07T07:27:29Z"),
        # The offset may move the date, the month, the year; leap days count.
        ("2014-12-31T22:30:00-05:00", "2015-01-01T03:30:00Z"),
        ("2015-01-01T01:00:00+02:00", "2014-12-31T23:00:00Z"),
        ("2016-03-01T01:00:00+02:00", "2016-02-29T23:00:00Z"),
        ("2015-03-01T01:00:00+02:00", "2015-02-28T23:00:00Z"),
        # Fraction digits are kept as sent, however many.
        ("2014-06-07T07:27:29.5-05:00", "2014-06-07T12:27:29.5Z"),
        ("2014-06-07T07:27:29.120-05:00", "2014-06-07T12:27:29.120Z"),
        ("2014-06-07T07:27:29.000Z", "2014-06-07T07:27:29.000Z"),
        ("2014-06-07T07:27:29.123456789+0200", "2014-06-07T05:27:29.123456789Z"),
        ("2014-06-07T07:27:29.123456", "2014-06-07T07:27:29.123456Z"),
    ],
)
def test_timestamp_in_utc(sent: str, utc: str) -> None:
    assert utc_timestamp(sent) == utc


@pytest.mark.parametrize(
    "sent",
    [
        "yesterday",
        "2014-06-07",
        "07:27:29",
        "07/06/2014 07:27:29",
        "1402144049",
        "2014-13-07T07:27:29Z",
        "2014-02-30T07:27:29Z",
        "2014-06-07T25:27:29Z",
        "2014-06-07T07:27:29-05:00 extra",
        "2014-06-07T07:27Z",
        "Sat, 07 Jun 2014 07:27:29 -0500",
    ],
)
def test_text_that_is_no_timestamp_is_kept_verbatim(sent: str) -> None:
    assert utc_timestamp(sent) == sent


def test_absent_timestamp_is_null() -> None:
    assert utc_timestamp(None) is None
    assert event_of(b'{"origin": "MMS_MT", "code": "E101"}', "json")["timestamp"] is None
    assert (
        event_of(b'{"origin": "MMS_MT", "code": "E101", "timestamp": ""}', "json")["timestamp"]
        is None
    )


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize(
    ("sent", "utc"),
    [
        ("2014-06-07T07:27:29-05:00", "2014-06-07T12:27:29Z"),
        ("2014-06-07T07:27:29-0500", "2014-06-07T12:27:29Z"),
        ("2014-06-07T07:27:29+02:00", "2014-06-07T05:27:29Z"),
        ("2014-06-07T07:27:29.25Z", "2014-06-07T07:27:29.25Z"),
        ("2014-06-07T07:27:29", "2014-06-07T07:27:29Z"),
        ("  2014-06-07T07:27:29-05:00  ", "2014-06-07T12:27:29Z"),
        ("not a time", "not a time"),
    ],
)
def test_event_timestamp_from_a_postback(fmt: str, sent: str, utc: str) -> None:
    body = (
        f"<postback><origin>MMS_MT</origin><code>N101</code><timestamp>{sent}</timestamp>"
        "</postback>"
        if fmt == "xml"
        else f'{{"origin": "MMS_MT", "code": "N101", "timestamp": "{sent}"}}'
    )
    assert event_of(body.encode(), fmt)["timestamp"] == utc


@pytest.mark.parametrize("sent", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_timestamp_outside_the_calendar_is_kept_verbatim(sent: str) -> None:
    body = f'{{"origin": "MMS_MT", "code": "N101", "timestamp": "{sent}"}}'.encode()
    assert event_of(body, "json")["timestamp"] == sent


@pytest.mark.parametrize(
    ("sent", "utc"),
    [
        ("0999-06-07T07:27:34Z", "0999-06-07T07:27:34Z"),
        ("0001-01-01T00:00:00", "0001-01-01T00:00:00Z"),
        ("0099-12-31T22:00:00-05:00", "0100-01-01T03:00:00Z"),
        ("1000-01-01T01:00:00+02:00", "0999-12-31T23:00:00Z"),
        ("0010-06-07T07:27:34.5+01:00", "0010-06-07T06:27:34.5Z"),
    ],
)
def test_a_year_before_1000_keeps_four_digits(sent: str, utc: str) -> None:
    assert utc_timestamp(sent) == utc


@pytest.mark.parametrize(
    ("sent", "utc"),
    [
        ("2014-06-07T07:27:29+18:00", "2014-06-06T13:27:29Z"),
        ("2014-06-07T07:27:29-18:00", "2014-06-08T01:27:29Z"),
        ("2014-06-07T07:27:29+14:00", "2014-06-06T17:27:29Z"),
        ("2014-06-07T07:27:29-00:59", "2014-06-07T08:26:29Z"),
        ("2014-06-07T07:27:29+1859", "2014-06-06T12:28:29Z"),
    ],
)
def test_offsets_up_to_18_hours_and_59_minutes_are_applied(sent: str, utc: str) -> None:
    assert utc_timestamp(sent) == utc


@pytest.mark.parametrize(
    "sent",
    [
        "2014-06-07T07:27:29+99:99",
        "2014-06-07T07:27:29+24:00",
        "2014-06-07T07:27:29-00:60",
        "2014-06-07T07:27:29+19:00",
        "2014-06-07T07:27:29-1900",
        "2014-06-07T07:27:29+0075",
        "2014-06-07T07:27:29.5-23:59",
    ],
)
def test_an_offset_out_of_range_is_no_timestamp(sent: str) -> None:
    assert utc_timestamp(sent) == sent
