"""Parse a raw postback body (XML or JSON) into its fields. Pure: no I/O.

Everything that is not a postback raises :class:`NotAPostback` with a reason fit for the
``x-error`` header of the quarantine queue.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any
from xml.parsers import expat as _expat

import orjson
import xmltodict

# Deeper documents are not postbacks; the bound keeps every later step (normalization,
# serialization of ``extra``) far away from recursion limits.
MAX_DEPTH = 32

_BOM = codecs.BOM_UTF8


class NotAPostback(ValueError):
    """The body cannot become an event; ``str(exc)`` is the quarantine reason."""


def _doctype_forbidden(*_args: object) -> None:
    raise NotAPostback("DTD declarations are not accepted")


class _NoDoctypeExpat:
    """An ``expat`` stand-in for xmltodict whose parsers refuse any DOCTYPE outright.

    xmltodict already refuses entity declarations; refusing the DOCTYPE as well turns away
    external DTDs and entities pointing at files before anything is resolved.
    """

    @staticmethod
    def ParserCreate(encoding: str | None = None, namespace_separator: str | None = None) -> Any:
        parser = _expat.ParserCreate(encoding, namespace_separator)
        parser.StartDoctypeDeclHandler = _doctype_forbidden
        parser.SetParamEntityParsing(_expat.XML_PARAM_ENTITY_PARSING_NEVER)
        return parser


class BigInt(str):
    """A JSON integer outside ``-2**63 .. 2**64-1``, as its digits (orjson reads it as a float).

    A ``str``, so orjson writes it as a JSON string and a named field gets its digits.
    """

    __slots__ = ()


_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1
_BIG = float(2**63)


def _shape(value: Any) -> tuple[int, bool]:
    """Nesting depth of a JSON-like value, computed without recursion, and whether it holds
    an integral float of ``2**63`` or more in size (how orjson reads a too-large integer)."""
    deepest = 0
    big = False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            big = big or (isinstance(item, float) and abs(item) >= _BIG and item.is_integer())
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest, big
        stack.extend((child, level + 1) for child in children)
    return deepest, big


def _depth(value: Any) -> int:
    """Nesting depth of a JSON-like value, computed without recursion."""
    return _shape(value)[0]


def _decode(body: bytes, charset: str) -> str:
    """``body`` decoded as ``charset``; any failure of the codec is a :class:`NotAPostback`."""
    try:
        return body.decode(charset)
    except LookupError:  # also codecs that are no text encoding: base64, rot13, zlib, ...
        raise NotAPostback(f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise NotAPostback(
            f"body is not valid {charset}: {exc.reason} at byte {exc.start}"
        ) from None
    except (UnicodeError, ValueError) as exc:  # codecs such as punycode raise their own
        raise NotAPostback(f"body is not valid {charset}: {exc}") from None
    except Exception as exc:  # a codec is arbitrary code; none of it may escape
        raise NotAPostback(f"body cannot be decoded as {charset}: {type(exc).__name__}") from None


def _utf8(body: bytes, charset: str) -> bytes:
    """``body`` decoded as ``charset``, in UTF-8.

    Codecs such as UTF-7 or ``unicode_escape`` can yield lone surrogates, which are no
    text: such a body is not valid in its charset.
    """
    decoded = _decode(body, charset)
    try:
        return decoded.encode("utf-8")
    except UnicodeEncodeError as exc:
        code_point = ord(decoded[exc.start])
        raise NotAPostback(
            f"body is not valid {charset}: decodes to a lone surrogate "
            f"U+{code_point:04X} at character {exc.start}"
        ) from None


# Encodings expat decodes itself; for any other declared encoding Python decodes first.
_EXPAT_NATIVE = frozenset({"utf8", "utf16", "iso88591", "latin1", "usascii", "ascii"})
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")


def _declared_encoding(body: bytes) -> str | None:
    """The XML declaration's encoding when expat cannot decode it itself."""
    start = body[len(_BOM) :] if body.startswith(_BOM) else body
    match = _DECLARATION.match(start[:200])
    if match is None:
        return None
    name = match.group(1).decode("ascii")
    key = name.lower().replace("-", "").replace("_", "")
    return None if key in _EXPAT_NATIVE else name


def parse_xml(body: bytes, charset: str | None = None) -> dict[str, Any]:
    """Fields of an XML ``<postback>``: nested elements as dicts, attributes as ``@name``."""
    encoding: str | None = None
    # The HTTP charset wins over the XML declaration; an encoding expat does not know
    # (Shift_JIS, say) is decoded by Python. Either way expat is then told it reads UTF-8.
    decode_as = charset or _declared_encoding(body)
    if decode_as:
        body = _utf8(body, decode_as)
        encoding = "utf-8"
    try:
        doc = xmltodict.parse(body, encoding=encoding, expat=_NoDoctypeExpat)
    except NotAPostback:
        raise
    except _expat.ExpatError as exc:
        raise NotAPostback(f"not well-formed XML: {exc}") from None
    except LookupError as exc:
        raise NotAPostback(f"unknown XML encoding: {exc}") from None
    except ValueError as exc:  # xmltodict refuses entity declarations this way
        if "entit" in str(exc):
            raise NotAPostback(f"XML entities are not accepted: {exc}") from None
        raise NotAPostback(f"XML cannot be read: {exc}") from None
    except Exception as exc:  # expat and xmltodict are foreign code; none of it may escape
        raise NotAPostback(f"XML cannot be read: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or len(doc) != 1 or "postback" not in doc:
        root = next(iter(doc), None) if isinstance(doc, dict) else None
        raise NotAPostback(f"not a postback: XML root is <{root}>, not <postback>")
    fields = doc["postback"]
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise NotAPostback("not a postback: <postback> holds only text")
    if _depth(fields) > MAX_DEPTH:
        raise NotAPostback(f"not a postback: nested deeper than {MAX_DEPTH} levels")
    return fields


def _json_int(literal: str) -> int | BigInt:
    """An integer literal as orjson reads it, or as :class:`BigInt` where orjson cannot."""
    if len(literal) <= 20:  # JSON has no leading zeros: longer is beyond 64 bits
        number = int(literal)
        if _I64_MIN <= number <= _U64_MAX:
            return number
    return BigInt(literal)


def _with_big_ints(data: bytes, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` read again with integers beyond 64 bits as :class:`BigInt`; ``doc`` itself
    when it has none (an integral float such as ``1e19`` was sent as a float)."""
    try:
        again = json.loads(data.decode("utf-8"), parse_int=_json_int)
    except Exception:  # orjson read it; keep orjson's reading rather than lose the postback
        return doc
    if not isinstance(again, dict) or not _holds_big_int(again):
        return doc
    return again


def _holds_big_int(value: Any) -> bool:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, BigInt):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(body: bytes, charset: str | None = None) -> dict[str, Any]:
    """Fields of a JSON postback object, as sent.

    An integer outside ``-2**63 .. 2**64-1`` is a :class:`BigInt` holding its digits, so a
    named field gets them verbatim and in ``extra`` it appears as a string of its digits.
    """
    data = body
    if charset and charset.replace("-", "").replace("_", "").lower() not in ("utf8",):
        data = _utf8(body, charset)
    elif body.startswith(_BOM):
        data = body[len(_BOM) :]
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise NotAPostback(f"not well-formed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise NotAPostback(f"not a postback: JSON {type(doc).__name__}, not an object")
    depth, big = _shape(doc)
    if depth > MAX_DEPTH:
        raise NotAPostback(f"not a postback: nested deeper than {MAX_DEPTH} levels")
    return _with_big_ints(data, doc) if big else doc


def parse(body: bytes, fmt: str, charset: str | None = None) -> dict[str, Any]:
    """Fields of a postback that arrived as ``fmt`` (``xml`` or ``json``)."""
    if fmt == "xml":
        return parse_xml(body, charset)
    if fmt == "json":
        return parse_json(body, charset)
    raise NotAPostback(f"unknown format {fmt!r}")
