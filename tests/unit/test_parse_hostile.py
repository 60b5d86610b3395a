"""Hostile bodies and charsets end in ``NotAPostback``, never in another exception; JSON
integers beyond 64 bits keep their digits."""

from __future__ import annotations

import encodings.aliases
import random

import orjson
import pytest

from ingest.event import normalize
from ingest.postback import NotAPostback, parse

from ._support import RECEIVED_AT, event_of

XML_LONE_SURROGATE = (
    b"<postback><origin>MMS_MT</origin><code>N102</code><status>+2AA-</status></postback>"
)
JSON_LONE_SURROGATE = b'{"origin":"MMS_MT","code":"N102","status":"+2AA-"}'


# --- codecs that yield lone surrogates --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fmt", "charset"),
    [
        (XML_LONE_SURROGATE, "xml", "utf-7"),
        (b'<?xml version="1.0" encoding="utf-7"?>' + XML_LONE_SURROGATE, "xml", None),
        (JSON_LONE_SURROGATE, "json", "utf-7"),
        (b'{"origin":"MMS_MT","code":"N102","status":"\\ud800"}', "json", "unicode_escape"),
        (
            b"<postback><origin>\\udc00</origin><code>N1</code></postback>",
            "xml",
            "raw_unicode_escape",
        ),
    ],
)
def test_a_lone_surrogate_is_no_valid_text(body: bytes, fmt: str, charset: str | None) -> None:
    with pytest.raises(NotAPostback, match=r"is not valid .*: decodes to a lone surrogate U\+D"):
        parse(body, fmt, charset)


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_valid_utf7_still_parses(fmt: str) -> None:
    body = (
        b"<postback><origin>MMS_MT</origin><code>N401</code><keyword>caf+AOk-</keyword></postback>"
        if fmt == "xml"
        else b'{"origin":"MMS_MT","code":"N401","keyword":"caf+AOk-"}'
    )
    assert event_of(body, fmt, "utf-7")["keyword"] == "café"


def test_valid_utf7_declared_in_xml_still_parses() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-7"?>'
        b"<postback><origin>MMS_MT</origin><code>N401</code><keyword>caf+AOk-</keyword></postback>"
    )
    assert event_of(body, "xml")["keyword"] == "café"


# --- any bytes, any codec name ----------------------------------------------------------

ODD_CODECS = [
    "base64",
    "rot13",
    "zlib",
    "uu",
    "hex",
    "bz2",
    "quopri",
    "idna",
    "punycode",
    "unicode_escape",
    "raw_unicode_escape",
    "utf-7",
    "utf-16",
    "utf-32",
    "utf-8-sig",
    "mbcs",
    "oem",
    "undefined",
    "no-such-charset",
    "utf\x00-8",
    " ",
]
CODECS = sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values()))
CODECS += ODD_CODECS

SAMPLES = [
    b"<postback><origin>MMS_MT</origin><code>N102</code><to>1</to></postback>",
    b'{"origin":"MMS_MT","code":"N102","to":1,"n":123456789012345678901234567890}',
]


def _bodies() -> list[bytes]:
    """Fixed odd bodies, random bytes and randomly damaged postbacks (seeded)."""
    rng = random.Random(20140607)
    bodies = [
        b"",
        b"\\",
        b"+",
        b"+2AA-",
        b"\xff\xfe<\x00",
        b"\xef\xbb\xbf{}",
        b"\\ud800\\udc00",
        b"=\n",
        XML_LONE_SURROGATE,
        JSON_LONE_SURROGATE,
        *SAMPLES,
    ]
    bodies += [rng.randbytes(rng.randrange(1, 48)) for _ in range(6)]
    for sample in SAMPLES:
        for _ in range(3):
            damaged = bytearray(sample)
            for _ in range(rng.randrange(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            bodies.append(bytes(damaged))
    return bodies


BODIES = _bodies()


def _outcome(body: bytes, fmt: str, charset: str | None) -> str:
    """``event`` or ``quarantined``; any other exception fails the test."""
    try:
        fields = parse(body, fmt, charset)
    except NotAPostback as exc:
        assert str(exc).strip()
        return "quarantined"
    assert isinstance(fields, dict)
    try:
        event = normalize(fields, fmt, RECEIVED_AT)
    except NotAPostback:
        return "quarantined"
    orjson.dumps(event)
    return "event"


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("charset", CODECS)
def test_any_bytes_in_any_charset_is_an_event_or_quarantined(fmt: str, charset: str) -> None:
    declaration = b'<?xml version="1.0" encoding="' + charset.encode("latin-1") + b'"?>'
    for body in BODIES:
        assert _outcome(body, fmt, charset) in ("event", "quarantined")
        if fmt == "xml":
            assert _outcome(declaration + body, fmt, None) in ("event", "quarantined")


@pytest.mark.parametrize("fmt", ["xml", "json", "", "XML", "yaml"])
def test_any_bytes_without_charset_is_an_event_or_quarantined(fmt: str) -> None:
    for body in BODIES:
        assert _outcome(body, fmt, None) in ("event", "quarantined")


# --- JSON integers beyond 64 bits -------------------------------------------------------

BIG = "123456789012345678901234567890"


@pytest.mark.parametrize(
    "number",
    [BIG, "-" + BIG, str(2**64), str(-(2**63) - 1), "9" * 300],
)
def test_a_named_field_keeps_the_digits_of_a_big_integer(number: str) -> None:
    body = f'{{"origin":"MMS_MT","code":"N102","to":{number},"mms-id":{number}}}'.encode()
    event = event_of(body, "json")
    assert event["to"] == number
    assert event["mms_id"] == number
    assert orjson.loads(orjson.dumps(event))["to"] == number


def test_a_big_integer_in_a_list_field_keeps_its_digits() -> None:
    body = f'{{"origin":"MMS_MT","code":"N102","copy-to":{{"number":[{BIG},5]}}}}'.encode()
    assert event_of(body, "json")["copy_to"] == [BIG, "5"]


def test_a_big_integer_in_extra_is_a_string_of_its_digits() -> None:
    body = (
        '{"origin":"MMS_MT","code":"N102",'
        f'"big":{BIG},"nested":[1,{{"deep":[-{BIG}]}}],"small":7,"ratio":0.5,"f":1e19}}'
    ).encode()
    extra = event_of(body, "json")["extra"]
    assert extra == {
        "big": BIG,
        "nested": [1, {"deep": ["-" + BIG]}],
        "small": 7,
        "ratio": 0.5,
        "f": 1e19,
    }
    assert orjson.loads(orjson.dumps(extra)) == extra


@pytest.mark.parametrize(
    "number",
    [
        "0",
        "-0",
        "31003",
        str(2**63 - 1),
        str(2**63),
        str(2**64 - 1),
        str(-(2**63)),
        "1e19",
        "-1e30",
        "18446744073709551616.0",
        "0.1",
        "1.5e300",
    ],
)
def test_numbers_within_64_bits_and_floats_read_as_before(number: str) -> None:
    """Their event ids must not move: what orjson reads is kept, type and value."""
    body = f'{{"origin":"MMS_MT","code":"N102","to":{number},"x":[{number}]}}'.encode()
    as_before = orjson.loads(body)
    fields = parse(body, "json")
    assert orjson.dumps(fields) == orjson.dumps(as_before)
    assert [type(v) for v in fields["x"]] == [type(v) for v in as_before["x"]]
    event = normalize(fields, "json", RECEIVED_AT)
    assert event["event_id"] == normalize(as_before, "json", RECEIVED_AT)["event_id"]
