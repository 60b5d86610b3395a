"""What the receiver decides from the content type and the first bytes, without parsing."""

from __future__ import annotations

import pytest

from ingest.mediatype import detect, is_blank

BOM = b"\xef\xbb\xbf"
XML = b"<postback><origin>MMS_MT</origin><code>N101</code></postback>"
JSON = b'{"origin": "MMS_MT", "code": "N101"}'


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/xml", ("xml", None)),
        ("text/xml", ("xml", None)),
        ("application/soap+xml", ("xml", None)),
        ("application/vnd.sinch.postback+xml", ("xml", None)),
        ("Application/XML", ("xml", None)),
        ("TEXT/XML; CHARSET=ISO-8859-1", ("xml", "ISO-8859-1")),
        ("application/xml; charset=utf-8", ("xml", "utf-8")),
        ("application/xml;charset=windows-1252", ("xml", "windows-1252")),
        ('text/xml; charset="ISO-8859-1"', ("xml", "ISO-8859-1")),
        ("text/xml ; foo=bar ; charset = utf-16 ", ("xml", "utf-16")),
        ("application/json", ("json", None)),
        ("Application/Json", ("json", None)),
        ("application/json; charset=UTF-8", ("json", "UTF-8")),
        ("application/json;charset=iso-8859-1", ("json", "iso-8859-1")),
        ("application/json; charset=", ("json", None)),
    ],
)
def test_xml_and_json_content_types_decide(
    content_type: str, expected: tuple[str, str | None]
) -> None:
    # The content type decides, whatever the body looks like.
    assert detect(content_type, XML if expected[0] == "xml" else JSON) == expected
    assert detect(content_type, b"neither") == expected


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded"],
)
@pytest.mark.parametrize(
    ("body", "fmt"),
    [
        (XML, "xml"),
        (JSON, "json"),
        (b"  \r\n\t" + XML, "xml"),
        (b"\n\n" + JSON, "json"),
        (BOM + XML, "xml"),
        (BOM + JSON, "json"),
        (BOM + b" \n " + XML, "xml"),
        (BOM + b"\t\r\n" + JSON, "json"),
        (b'<?xml version="1.0"?><postback/>', "xml"),
        (b"[1, 2]", None),
        (b"origin=MMS_MT&code=N101", None),
        (b"\xff\xfe<\x00p\x00", None),
        (b"x<postback/>", None),
        (b'"{}"', None),
    ],
)
def test_other_or_no_content_type_sniffs_the_first_byte(
    content_type: str | None, body: bytes, fmt: str | None
) -> None:
    assert detect(content_type, body)[0] == fmt


def test_charset_of_another_content_type_is_still_reported() -> None:
    assert detect("text/plain; charset=ISO-8859-1", XML) == ("xml", "ISO-8859-1")
    assert detect("text/plain; charset=ISO-8859-1", b"hello") == (None, "ISO-8859-1")


def test_json_suffix_types_are_not_json_by_content_type() -> None:
    # Only application/json is named by the contract; others fall back to sniffing.
    assert detect("application/problem+json", XML) == ("xml", None)
    assert detect("text/json", b"hello")[0] is None


@pytest.mark.parametrize(
    "body", [b"", b" ", b"\r\n", b"\t \n\r ", BOM, BOM + b"  \n", b" " * 70_000]
)
def test_blank_bodies(body: bytes) -> None:
    assert is_blank(body)


@pytest.mark.parametrize("body", [XML, JSON, b" x ", b"\x00", BOM + b"{", b"\n}\n", b"0"])
def test_bodies_that_are_not_blank(body: bytes) -> None:
    assert not is_blank(body)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        # aiohttp hands over header bytes that are not UTF-8 surrogate-escaped.
        ("application/xml; charset=\udcff", ("xml", "\\xff")),
        ("application/xml; charset=utf\udcc3\udcbf8", ("xml", "utf\\xc3\\xbf8")),
        ("application/json; charset=ütf-8", ("json", "\\xc3\\xbctf-8")),
        ('text/xml; charset="iso\x1f8859-1"', ("xml", "iso\\x1f8859-1")),
        ("text/xml; charset=a\tb", ("xml", "a\\x09b")),
    ],
)
def test_a_charset_that_is_no_ascii_token_is_kept_escaped(
    content_type: str, expected: tuple[str, str]
) -> None:
    # Printable ASCII only: it travels in the intake envelope with the other postbacks of
    # its batch, and the worker quarantines it as an unknown charset, naming it.
    assert detect(content_type, XML) == expected
    assert expected[1].isascii() and expected[1].isprintable()
