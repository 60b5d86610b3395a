"""Bodies that are no postback are quarantined with a reason; text encodings are honoured."""

from __future__ import annotations

import time

import pytest

from ingest.event import normalize
from ingest.postback import NotAPostback, parse, parse_json, parse_xml

from ._support import RECEIVED_AT, event_of


def quarantine_reason(body: bytes, fmt: str, charset: str | None = None) -> str:
    """The reason the worker gives for ``body``; fails the test if it makes an event."""
    with pytest.raises(NotAPostback) as caught:
        normalize(parse(body, fmt, charset), fmt, RECEIVED_AT)
    reason = str(caught.value)
    assert reason.strip(), "a quarantined postback needs a reason for x-error"
    return reason


# --- not well-formed -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"<postback><origin>MMS_MT</origin><code>N101</code>",
        b"<postback><origin>MMS_MT</code></postback>",
        b"<postback><origin>MMS_MT</origin><code>N101</code></postback><postback/>",
        b"<postback><origin>A & B</origin><code>N101</code></postback>",
        b"<postback><origin>&undefined;</origin><code>N101</code></postback>",
        b"<",
        b"{not xml}",
        b"<postback>\x00</postback>",
    ],
)
def test_malformed_xml(body: bytes) -> None:
    quarantine_reason(body, "xml")


@pytest.mark.parametrize(
    "body",
    [
        b'{"origin": "MMS_MT", "code": "N101"',
        b"{'origin': 'MMS_MT', 'code': 'N101'}",
        b'{"origin": "MMS_MT", "code": "N101",}',
        b'{"origin": "MMS_MT", "code": NaN}',
        b'{"origin": "MMS_MT"} {"code": "N101"}',
        b'{"origin": "\\ud800", "code": "N101"}',
        b"<postback/>",
        b"{",
    ],
)
def test_malformed_json(body: bytes) -> None:
    quarantine_reason(body, "json")


# --- DTDs and entities: refused, never expanded ----------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<postback><origin>MMS_MT</origin><code>N101</code><status>&lol9;</status></postback>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE postback [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<postback><origin>MMS_MT</origin><code>N101</code><status>&passwd;</status></postback>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE postback SYSTEM "file:///etc/passwd">
<postback><origin>MMS_MT</origin><code>N101</code></postback>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE postback [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>
<postback><origin>MMS_MT</origin><code>N101</code></postback>"""

HARMLESS_DOCTYPE = b"""<!DOCTYPE postback>
<postback><origin>MMS_MT</origin><code>N101</code></postback>"""

INTERNAL_ENTITY = b"""<!DOCTYPE postback [<!ENTITY op "31003">]>
<postback><origin>MMS_MT</origin><code>N101</code><operator-id>&op;</operator-id></postback>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        EXTERNAL_DTD,
        PARAMETER_ENTITY,
        HARMLESS_DOCTYPE,
        INTERNAL_ENTITY,
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "external-dtd",
        "parameter-entity",
        "doctype-only",
        "internal-entity",
    ],
)
def test_dtd_or_entity_declaration_is_quarantined(body: bytes) -> None:
    started = time.monotonic()
    quarantine_reason(body, "xml")
    assert time.monotonic() - started < 1.0
    # Also when the sender names a charset, and with a BOM in front.
    quarantine_reason(body, "xml", "utf-8")
    quarantine_reason(b"\xef\xbb\xbf" + body, "xml")


@pytest.mark.parametrize("body", [EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY])
def test_external_file_content_never_appears(body: bytes) -> None:
    reason = quarantine_reason(body, "xml")
    # /etc/passwd starts with root's line on every Unix; its content must not leak anywhere.
    assert "root:" not in reason
    assert ":0:0:" not in reason


# --- depth -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inner",
    [
        b"<a>" * 100_000 + b"x" + b"</a>" * 100_000,
        b"<a>" * 100_000,  # and never closed
    ],
    ids=["closed", "unclosed"],
)
def test_xml_nested_100000_deep_is_quarantined_quickly(inner: bytes) -> None:
    body = b"<postback><origin>MMS_MT</origin><code>N101</code>" + inner + b"</postback>"
    started = time.monotonic()
    quarantine_reason(body, "xml")
    assert time.monotonic() - started < 5.0


def test_json_nested_100000_deep_is_quarantined_quickly() -> None:
    body = b'{"origin": "MMS_MT", "code": "N101", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.monotonic()
    quarantine_reason(body, "json")
    assert time.monotonic() - started < 5.0


def test_moderate_nesting_in_extra_is_still_an_event() -> None:
    body = b"<postback><origin>MMS_MT</origin><code>N101</code><a><b><c>1</c></b></a></postback>"
    assert event_of(body, "xml")["extra"] == {"a": {"b": {"c": "1"}}}


# --- not a postback --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'[{"origin": "MMS_MT", "code": "N101"}]',
        b'"MMS_MT"',
        b"42",
        b"null",
        b"true",
        b"{}",
        b'{"code": "N101"}',
        b'{"origin": "MMS_MT"}',
        b'{"origin": "", "code": "N101"}',
        b'{"origin": "   ", "code": "N101"}',
        b'{"origin": null, "code": "N101"}',
        b'{"origin": "MMS_MT", "code": ""}',
        b'{"origin": "MMS_MT", "code": null}',
        b'{"postback": {"origin": "MMS_MT", "code": "N101"}}',
    ],
)
def test_json_that_is_no_postback(body: bytes) -> None:
    quarantine_reason(body, "json")


@pytest.mark.parametrize(
    "body",
    [
        b"<postbacks><origin>MMS_MT</origin><code>N101</code></postbacks>",
        b"<Postback><origin>MMS_MT</origin><code>N101</code></Postback>",
        b"<response><postback><origin>MMS_MT</origin><code>N101</code></postback></response>",
        b"<postback/>",
        b"<postback></postback>",
        b"<postback>N101</postback>",
        b"<postback><code>N101</code></postback>",
        b"<postback><origin>MMS_MT</origin></postback>",
        b"<postback><origin></origin><code>N101</code></postback>",
        b"<postback><origin>  \n  </origin><code>N101</code></postback>",
        b"<postback><origin>MMS_MT</origin><code/></postback>",
    ],
)
def test_xml_that_is_no_postback(body: bytes) -> None:
    quarantine_reason(body, "xml")


def test_postback_of_the_other_format_is_quarantined() -> None:
    quarantine_reason(b'{"origin": "MMS_MT", "code": "N101"}', "xml")
    quarantine_reason(b"<postback><origin>MMS_MT</origin><code>N101</code></postback>", "json")


def test_the_parsers_raise_the_same_reason_type() -> None:
    with pytest.raises(NotAPostback):
        parse_xml(b"<root/>")
    with pytest.raises(NotAPostback):
        parse_json(b"[]")
    assert issubclass(NotAPostback, ValueError)


# --- text encodings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fmt"),
    [
        (
            b"<postback><origin>MMS_MT</origin><code>N101</code><status>\xff\xfe</status>"
            b"</postback>",
            "xml",
        ),
        (
            b"<postback><origin>MMS_MT</origin><code>N101</code><status>Caf\xe9</status>"
            b"</postback>",
            "xml",
        ),
        (b'{"origin": "MMS_MT", "code": "N101", "status": "Caf\xe9"}', "json"),
        (b'{"origin": "MMS_MT", "code": "N101", "status": "\xc3"}', "json"),
    ],
)
@pytest.mark.parametrize("charset", [None, "utf-8", "UTF-8"])
def test_invalid_utf8_is_quarantined(body: bytes, fmt: str, charset: str | None) -> None:
    quarantine_reason(body, fmt, charset)


@pytest.mark.parametrize("fmt", ["xml", "json"])
@pytest.mark.parametrize("charset", ["us-ascii", "no-such-charset", "base64", "rot13"])
def test_wrong_or_unknown_charset_is_quarantined(fmt: str, charset: str) -> None:
    text = "Café ☕"
    body = (
        f"<postback><origin>MMS_MT</origin><code>N101</code><status>{text}</status></postback>"
        if fmt == "xml"
        else f'{{"origin": "MMS_MT", "code": "N101", "status": "{text}"}}'
    ).encode("utf-8")
    quarantine_reason(body, fmt, charset)


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_utf16_body_declared_as_utf8_is_quarantined(fmt: str) -> None:
    text = (
        "<postback><origin>MMS_MT</origin><code>N101</code></postback>"
        if fmt == "xml"
        else '{"origin": "MMS_MT", "code": "N101"}'
    )
    quarantine_reason(text.encode("utf-16"), fmt, "utf-8")


@pytest.mark.parametrize("charset", ["ISO-8859-1", "iso-8859-1", "latin1"])
def test_iso_8859_1_body_with_charset_param_decodes(charset: str) -> None:
    xml = "<postback><origin>MMS_MO</origin><code>N401</code><keyword>Café Ü</keyword></postback>"
    assert event_of(xml.encode("latin-1"), "xml", charset)["keyword"] == "Café Ü"
    json = '{"origin": "MMS_MO", "code": "N401", "keyword": "Café Ü"}'
    assert event_of(json.encode("latin-1"), "json", charset)["keyword"] == "Café Ü"


def test_utf16_body_with_charset_param_decodes() -> None:
    xml = "<postback><origin>MMS_MO</origin><code>N401</code><keyword>Ωmega</keyword></postback>"
    assert event_of(xml.encode("utf-16"), "xml", "utf-16")["keyword"] == "Ωmega"
    json = '{"origin": "MMS_MO", "code": "N401", "keyword": "Ωmega"}'
    assert event_of(json.encode("utf-16"), "json", "UTF-16")["keyword"] == "Ωmega"


def test_utf8_is_the_default_for_json_and_xml() -> None:
    json = '{"origin": "MMS_MO", "code": "N401", "keyword": "Café ☕"}'.encode()
    assert event_of(json, "json")["keyword"] == "Café ☕"
    assert event_of(b"\xef\xbb\xbf" + json, "json")["keyword"] == "Café ☕"
    assert event_of(b"\xef\xbb\xbf" + json, "json", "utf-8")["keyword"] == "Café ☕"
    xml = "<postback><origin>MMS_MO</origin><code>N401</code><keyword>Café ☕</keyword></postback>"
    assert event_of(xml.encode(), "xml")["keyword"] == "Café ☕"


@pytest.mark.parametrize(
    ("declared", "codec", "text"),
    [
        ("ISO-8859-1", "latin-1", "Café Ü"),
        ("iso-8859-1", "latin-1", "Café Ü"),
        ("windows-1252", "cp1252", "€ Café"),
        ("ISO-8859-15", "iso-8859-15", "€ Café"),
        ("US-ASCII", "ascii", "Cafe"),
        ("UTF-16", "utf-16", "Ωmega Café"),
    ],
)
def test_xml_declaration_encoding_is_honoured_without_http_charset(
    declared: str, codec: str, text: str
) -> None:
    xml = (
        f'<?xml version="1.0" encoding="{declared}"?>\n'
        f"<postback><origin>MMS_MO</origin><code>N401</code><keyword>{text}</keyword></postback>"
    )
    assert event_of(xml.encode(codec), "xml")["keyword"] == text


def test_http_charset_wins_over_the_xml_declaration() -> None:
    xml = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        "<postback><origin>MMS_MO</origin><code>N401</code><keyword>Café ☕</keyword></postback>"
    )
    assert event_of(xml.encode("utf-8"), "xml", "utf-8")["keyword"] == "Café ☕"
    latin = xml.replace(" ☕", "").replace("ISO-8859-1", "UTF-8")
    assert event_of(latin.encode("latin-1"), "xml", "ISO-8859-1")["keyword"] == "Café"


# --- regressions: bugs found while writing these tests, now fixed -------------------------


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_punycode_charset_is_quarantined(fmt: str) -> None:
    body = (
        b"<postback><origin>MMS_MT</origin><code>N101</code></postback>"
        if fmt == "xml"
        else b'{"origin": "MMS_MT", "code": "N101"}'
    )
    quarantine_reason(body, fmt, "punycode")


def test_unknown_encoding_in_xml_declaration_is_quarantined() -> None:
    body = (
        b'<?xml version="1.0" encoding="x-no-such-encoding"?>'
        b"<postback><origin>MMS_MT</origin><code>N101</code></postback>"
    )
    quarantine_reason(body, "xml")


def test_shift_jis_xml_declaration_is_honoured() -> None:
    xml = (
        '<?xml version="1.0" encoding="Shift_JIS"?>'
        "<postback><origin>MMS_MO</origin><code>N401</code><keyword>日本</keyword></postback>"
    )
    assert event_of(xml.encode("shift_jis"), "xml")["keyword"] == "日本"
