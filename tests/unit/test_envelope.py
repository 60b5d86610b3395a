"""The intake message: records round-trip byte for byte; anything else is a BadEnvelope."""

from __future__ import annotations

import pytest

from ingest import envelope
from ingest.envelope import MAGIC, BadEnvelope, Record, pack, unpack

XML_RECORD = Record(
    postback_id="0190b6f4-7d2e-7c3a-9d1e-2f0a4b5c6d7e",
    received_at="2024-05-01T10:00:00.123456Z",
    fmt="xml",
    charset=None,
    body=b"<postback>\n    <origin>MMS_MT</origin>\n    <code>N101</code>\n</postback>",
)
JSON_RECORD = Record(
    postback_id="0190b6f4-7d2e-7c3a-9d1e-2f0a4b5c6d7f",
    received_at="2024-05-01T10:00:00.123457Z",
    fmt="json",
    charset="ISO-8859-1",
    body=b'{"origin": "MMS_MO", "code": "N401", "keyword": "Caf\xe9"}',
)
BINARY_RECORD = Record(
    postback_id="id-\u00e9\u2603",
    received_at="2024-05-01T10:00:01.000000Z",
    fmt="xml",
    charset="utf-16",
    body=bytes(range(256)) * 300,
)
EMPTY_BODY = Record("e", "2024-05-01T10:00:02.000000Z", "json", "", b"")


@pytest.mark.parametrize(
    "records",
    [
        [XML_RECORD],
        [JSON_RECORD],
        [BINARY_RECORD],
        [XML_RECORD, JSON_RECORD, BINARY_RECORD],
        [XML_RECORD] * 50,
    ],
    ids=["xml", "json-charset", "binary-70k", "three", "fifty"],
)
def test_round_trip(records: list[Record]) -> None:
    assert unpack(pack(records)) == records


def test_records_keep_their_order() -> None:
    records = [JSON_RECORD, XML_RECORD, BINARY_RECORD]
    assert [r.postback_id for r in unpack(pack(records))] == [r.postback_id for r in records]


def test_empty_charset_and_no_charset_read_back_as_none() -> None:
    (record,) = unpack(pack([EMPTY_BODY]))
    assert record.charset is None
    assert record.body == b""
    assert record.fmt == "json"


def test_pack_accepts_any_iterable() -> None:
    assert unpack(pack(iter([XML_RECORD, JSON_RECORD]))) == [XML_RECORD, JSON_RECORD]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PB",
        MAGIC,
        b"PB2" + pack([XML_RECORD])[3:],
        b"<postback><origin>MMS_MT</origin><code>N101</code></postback>",
        b'{"origin": "MMS_MT", "code": "N101"}',
        pack([XML_RECORD]) + b"\x00",
        pack([XML_RECORD]) + b"garbage",
        MAGIC + b"\x00\x05a\x1fb\x1fc" + b"\x00\x00\x00\x00",  # three metadata fields
        MAGIC + b"\x00\x09a\x1fb\x1fc\x1fd\x1fe" + b"\x00\x00\x00\x00",  # five
        MAGIC + b"\x00\x02\xff\xfe\x00\x00\x00\x00",  # metadata not UTF-8
        MAGIC + b"\x00\x06a\x1fb\x1fc\x1f" + b"\xff\xff\xff\xff" + b"x",  # body length lies
    ],
)
def test_garbage_is_a_bad_envelope(data: bytes) -> None:
    with pytest.raises(BadEnvelope):
        unpack(data)


@pytest.mark.parametrize("record", [XML_RECORD, JSON_RECORD, EMPTY_BODY])
def test_every_truncation_of_one_record_is_a_bad_envelope(record: Record) -> None:
    data = pack([record])
    for end in range(len(data)):
        with pytest.raises(BadEnvelope):
            unpack(data[:end])


def test_truncation_inside_a_later_record_is_a_bad_envelope() -> None:
    first = pack([XML_RECORD])
    data = pack([XML_RECORD, JSON_RECORD])
    for end in range(len(first) + 1, len(data)):
        with pytest.raises(BadEnvelope):
            unpack(data[:end])


def test_bad_envelope_is_a_value_error() -> None:
    assert issubclass(BadEnvelope, ValueError)


def test_truncation_between_records_is_a_bad_envelope() -> None:
    first = pack([XML_RECORD])
    data = pack([XML_RECORD, JSON_RECORD])
    with pytest.raises(BadEnvelope):
        unpack(data[: len(first)])


def _sized(size: int, n: int = 0) -> Record:
    return Record(f"id-{n}", "2026-01-01T00:00:00.000000Z", "xml", None, b"x" * size)


def test_batches_are_bounded_by_count_and_by_bytes_and_keep_the_order() -> None:
    records = [_sized(300_000, n) for n in range(10)]
    cut = list(envelope.batches(records, max_count=512, max_bytes=1 << 20))
    assert [r for part in cut for r in part] == records
    assert [len(part) for part in cut] == [3, 3, 3, 1]
    small = [_sized(10, n) for n in range(1100)]
    assert [len(p) for p in envelope.batches(small, 512, 1 << 20)] == [512, 512, 76]


def test_a_record_larger_than_the_byte_bound_goes_alone() -> None:
    records = [_sized(10, 0), _sized(3 << 20, 1), _sized(10, 2)]
    assert [len(p) for p in envelope.batches(records, 512, 1 << 20)] == [1, 1, 1]
    assert list(envelope.batches([], 512, 1 << 20)) == []
