"""What the receiver decides without parsing: the format and charset of a body. Pure."""

from __future__ import annotations

import codecs

_WHITESPACE = b" \t\r\n"
_BOM = codecs.BOM_UTF8


def _printable(value: str) -> str:
    """``value`` as printable ASCII: any other byte as ``\\xNN``.

    A charset name is an ASCII token; a header may still carry any bytes (aiohttp hands
    them over surrogate-escaped). Escaped, such a name travels safely in the intake
    envelope and the worker quarantines the postback with "unknown charset" naming it.
    """
    if value.isascii() and value.isprintable():
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)


def _split_content_type(content_type: str | None) -> tuple[str, str | None]:
    if not content_type:
        return "", None
    mime, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = _printable(value.strip().strip('"').strip()) or None
    return mime.strip().lower(), charset


def detect(content_type: str | None, body: bytes) -> tuple[str | None, str | None]:
    """``(format, charset)`` of a postback; format ``None`` means 415.

    XML media types (``application/xml``, ``text/xml``, ``*+xml``) and ``application/json``
    decide; any other or no content type falls back to the first byte after a UTF-8 BOM
    and white space: ``<`` XML, ``{`` JSON.
    """
    mime, charset = _split_content_type(content_type)
    if mime in ("application/xml", "text/xml") or mime.endswith("+xml"):
        return "xml", charset
    if mime == "application/json":
        return "json", charset
    start = body[len(_BOM) :] if body.startswith(_BOM) else body
    first = start.lstrip(_WHITESPACE)[:1]
    if first == b"<":
        return "xml", charset
    if first == b"{":
        return "json", charset
    return None, charset


def is_blank(body: bytes) -> bool:
    """Empty, or only white space (after an optional UTF-8 BOM)."""
    start = body[len(_BOM) :] if body.startswith(_BOM) else body
    return not start.strip(_WHITESPACE)
