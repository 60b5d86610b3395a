"""Distinct, realistic Sinch postbacks for the load generators.

Every request of a benchmark is a different postback (the project drops duplicates), so a
body is built from a run id and a counter: ``tracking-id`` is ``RUN-N`` and ``mms-id`` is N.
The mix cycles through four shapes, half XML (older API) and half JSON (newer API), the
same in the Python generator and in the wrk Lua script (``postback.lua``).
"""

from __future__ import annotations

import secrets

XML_CT = b"application/xml"
JSON_CT = b"application/json"

_XML = (
    "<postback>\n"
    "    <origin>MMS_MT</origin>\n"
    "    <code>{code}</code>\n"
    "    <sent-as>MMS</sent-as>\n"
    "    <status>{status}</status>\n"
    "    <mms-id>{n}</mms-id>\n"
    "    <from>28444</from>\n"
    "    <to>12399471613</to>\n"
    "    <tracking-id>{run}-{n}</tracking-id>\n"
    "    <operator-id>31003</operator-id>\n"
    "    <timestamp>2014-06-07T07:27:34-05:00</timestamp>\n"
    "    <handset>moto17c</handset>\n"
    "</postback>\n"
)
_JSON = (
    '{{"origin": "MMS_MT", "code": "{code}", "sent-as": "MMS", "status": "{status}", '
    '"status-details": "Message {status}", "to": "17745550001", "from": "18885551234", '
    '"timestamp": "2026-04-24T18:31:10Z", "tracking-id": "{run}-{n}", '
    '"client-reference": "send-{n}", "mms-id": "{n}", "handset": "Apple iPhone"}}'
)
_SHAPES: tuple[tuple[str, bytes, str, str], ...] = (
    (_XML, XML_CT, "N101", "Message Sent"),
    (_XML, XML_CT, "N102", "Message Sent/Delivered"),
    (_JSON, JSON_CT, "N101", "Sent"),
    (_JSON, JSON_CT, "N102", "Delivered"),
)


def new_run_id() -> str:
    """A short random prefix that keeps postbacks of different runs apart."""
    return "b" + secrets.token_hex(5)


FORMATS = ("mix", "xml", "json")


def shape_index(n: int, fmt: str = "mix") -> int:
    """The counter whose shape postback ``n`` takes: every shape for ``mix``; for ``xml``
    (``json``) only the XML (JSON) ones, N101 and N102 alternating, each ``n`` distinct."""
    if fmt == "mix":
        return n
    return (n // 2) * 4 + n % 2 + (2 if fmt == "json" else 0)


def postback(run: str, n: int, fmt: str = "mix") -> tuple[bytes, bytes]:
    """The ``n``-th postback of run ``run``: (content type, body)."""
    n = shape_index(n, fmt)
    template, ctype, code, status = _SHAPES[n % len(_SHAPES)]
    return ctype, template.format(code=code, status=status, run=run, n=n).encode()


def http_request(run: str, n: int, host: bytes = b"127.0.0.1", fmt: str = "mix") -> bytes:
    """A complete keep-alive HTTP/1.1 ``POST /postbacks`` request for postback ``n``."""
    ctype, body = postback(run, n, fmt)
    return b"".join(
        (
            b"POST /postbacks HTTP/1.1\r\nHost: ",
            host,
            b"\r\nContent-Type: ",
            ctype,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n\r\n",
            body,
        )
    )
