"""The code table, its refinement by Sinch's status text, routing keys and AMQP headers."""

from __future__ import annotations

import pytest

from ingest.codes import CODE_TABLE, classify
from ingest.event import amqp_headers, routing_key

from ._support import event_of

# The contract's code table, written out: code -> (family, status, final).
CONTRACT_TABLE: dict[str, tuple[str, str, bool]] = {
    "N101": ("delivery", "sent", False),
    "N102": ("delivery", "delivered", True),
    "N103": ("delivery", "expired", True),
    "E101": ("delivery", "failed", True),
    "E102": ("delivery", "rejected", True),  # with a status text saying neither
    "N202": ("delivery", "delivered", True),
    "E202": ("delivery", "failed", True),
    "E999": ("delivery", "error", True),
    "N003": ("template", "transcoded", True),
    "E002": ("template", "transcoding_failed", True),
    "E003": ("template", "transcoding_failed", True),
    "E004": ("template", "transcoding_failed", True),
    "N013": ("send", "transcoded", False),
    "E011": ("send", "validation_failed", True),
    "E012": ("send", "transcoding_failed", True),
    "E013": ("send", "transcoding_failed", True),
    "N401": ("inbound", "received", True),
    "N501": ("discovery", "sent", False),
    "N502": ("discovery", "delivered", True),
    "E501": ("discovery", "failed", True),
    "E502": ("discovery", "rejected", True),  # with a status text saying neither
}


@pytest.mark.parametrize(("code", "expected"), CONTRACT_TABLE.items())
def test_contract_code_table(code: str, expected: tuple[str, str, bool]) -> None:
    assert tuple(classify(code, "Message Sent/Rejected")) == expected


def test_code_table_holds_exactly_the_contract_codes() -> None:
    assert set(CODE_TABLE) == set(CONTRACT_TABLE)


@pytest.mark.parametrize(("code", "expected"), CONTRACT_TABLE.items())
def test_event_carries_the_classification(code: str, expected: tuple[str, str, bool]) -> None:
    body = f'{{"origin": "MMS_MT", "code": "{code}", "status": "Whatever"}}'.encode()
    event = event_of(body, "json")
    assert (event["family"], event["status"], event["final"]) == expected
    assert event["status_text"] == "Whatever"


@pytest.mark.parametrize("code", ["E102", "E502"])
@pytest.mark.parametrize(
    ("status_text", "status"),
    [
        ("Message,Sent/Expired", "expired"),  # Sinch's own wordings, from the XML page
        ("Message Sent/Rejected", "rejected"),
        ("Message Sent/Failed", "failed"),
        ("Message Sent/Not Supported", "rejected"),
        ("Rejected", "rejected"),  # the JSON page's wording
        ("EXPIRED", "expired"),
        ("expired", "expired"),
        ("Delivery FAILED by carrier", "failed"),
        ("failed", "failed"),
        ("Unrecognised", "rejected"),
        (None, "rejected"),
    ],
)
def test_e102_and_e502_are_refined_by_status_text(
    code: str, status_text: str | None, status: str
) -> None:
    family = "delivery" if code == "E102" else "discovery"
    assert tuple(classify(code, status_text)) == (family, status, True)


@pytest.mark.parametrize("code", ["E102", "E502"])
def test_refinement_through_a_postback(code: str) -> None:
    expired = f"<postback><origin>MMS_MT</origin><code>{code}</code>"
    expired += "<status>Message Sent/Expired</status></postback>"
    assert event_of(expired.encode(), "xml")["status"] == "expired"
    no_status = f'{{"origin": "MMS_MT", "code": "{code}"}}'.encode()
    event = event_of(no_status, "json")
    assert event["status"] == "rejected"
    assert event["status_text"] is None
    empty_status = f'{{"origin": "MMS_MT", "code": "{code}", "status": ""}}'.encode()
    assert event_of(empty_status, "json")["status"] == "rejected"


@pytest.mark.parametrize("code", ["N101", "E101", "N103", "E202", "N502"])
def test_other_codes_ignore_the_status_text(code: str) -> None:
    assert classify(code, "Message Sent/Expired") == classify(code, "Message Sent/Failed")
    assert classify(code, "Message Sent/Expired") == classify(code, None)


@pytest.mark.parametrize("code", ["N999", "E777", "X1", "N104", "N401X"])
def test_unknown_code_is_unknown_and_not_final(code: str) -> None:
    assert tuple(classify(code, "Message Sent/Failed")) == ("unknown", "unknown", False)


def test_unknown_code_is_an_event_with_its_fields_kept() -> None:
    body = b"""<postback>
    <origin>MMS_MT</origin>
    <code>N777</code>
    <status>Brand new</status>
    <tracking-id>T1</tracking-id>
    <new-field>value</new-field>
    <nested><a>1</a><b x="y">2</b></nested>
</postback>"""
    event = event_of(body, "xml")
    assert (event["code"], event["family"], event["status"], event["final"]) == (
        "N777",
        "unknown",
        "unknown",
        False,
    )
    assert event["status_text"] == "Brand new"
    assert event["tracking_id"] == "T1"
    assert event["extra"] == {
        "new-field": "value",
        "nested": {"a": "1", "b": {"@x": "y", "#text": "2"}},
    }
    assert routing_key(event) == "mms_mt.unknown.unknown.n777"


def test_unknown_code_in_json_keeps_extra_as_sent() -> None:
    body = b'{"origin": "MMS_MT", "code": "E900", "retry-after": 30, "tags": ["a", "b"]}'
    event = event_of(body, "json")
    assert (event["family"], event["status"], event["final"]) == ("unknown", "unknown", False)
    assert event["extra"] == {"retry-after": 30, "tags": ["a", "b"]}


@pytest.mark.parametrize(("sent", "code"), [("n102", "N102"), ("e002", "E002"), ("N40l", "N40L")])
def test_lower_case_code_is_upper_cased(sent: str, code: str) -> None:
    body = f"<postback><origin>MMS_MT</origin><code>{sent}</code></postback>".encode()
    event = event_of(body, "xml")
    assert event["code"] == code


def test_lower_case_code_is_classified_like_upper_case() -> None:
    lower = event_of(b'{"origin": "MMS_MT", "code": "n102"}', "json")
    assert (lower["code"], lower["family"], lower["status"], lower["final"]) == (
        "N102",
        "delivery",
        "delivered",
        True,
    )


def test_origin_is_kept_as_sent() -> None:
    event = event_of(b'{"origin": "mms_mt", "code": "N101"}', "json")
    assert event["origin"] == "mms_mt"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"origin": "MMS_MT", "code": "N102"}', "mms_mt.delivery.delivered.n102"),
        (b'{"origin": "MMS_MT", "code": "n101"}', "mms_mt.delivery.sent.n101"),
        (b'{"origin": "MMS_MO", "code": "N401"}', "mms_mo.inbound.received.n401"),
        (b'{"origin": "MMS_MT", "code": "E002"}', "mms_mt.template.transcoding_failed.e002"),
        (b'{"origin": "MMS_MT", "code": "E011"}', "mms_mt.send.validation_failed.e011"),
        (b'{"origin": "MMS_MT", "code": "N501"}', "mms_mt.discovery.sent.n501"),
        (
            b'{"origin": "MMS_MT", "code": "E102", "status": "Message Sent/Failed"}',
            "mms_mt.delivery.failed.e102",
        ),
        (
            b'{"origin": "MMS_MT", "code": "E502", "status": "Expired"}',
            "mms_mt.discovery.expired.e502",
        ),
        (b'{"origin": "MMS_MT", "code": "E102"}', "mms_mt.delivery.rejected.e102"),
    ],
)
def test_routing_key(body: bytes, key: str) -> None:
    assert routing_key(event_of(body, "json")) == key


@pytest.mark.parametrize("origin", ["MMS.MT", "MMS#MT", "MMS*MT", "MMS MT", "a.b.c.d"])
def test_routing_key_always_has_four_parts_without_wildcards(origin: str) -> None:
    body = f'{{"origin": "{origin}", "code": "N102"}}'.encode()
    key = routing_key(event_of(body, "json"))
    parts = key.split(".")
    assert len(parts) == 4, key
    assert parts[1:] == ["delivery", "delivered", "n102"]
    assert "#" not in key and "*" not in key and " " not in key
    assert key == key.lower()


def test_amqp_headers_carry_code_origin_status_and_tracking_id() -> None:
    body = (
        b'{"origin": "MMS_MT", "code": "n102", "status": "Message Sent/Delivered",'
        b' "tracking-id": "TU1TXzU5Nzg3OQ=="}'
    )
    assert amqp_headers(event_of(body, "json")) == {
        "code": "N102",
        "origin": "MMS_MT",
        "status": "delivered",
        "tracking_id": "TU1TXzU5Nzg3OQ==",
    }


def test_amqp_headers_leave_out_a_null_tracking_id() -> None:
    for body in (
        b'{"origin": "MMS_MT", "code": "N003"}',
        b'{"origin": "MMS_MT", "code": "N003", "tracking-id": ""}',
        b'{"origin": "MMS_MT", "code": "N003", "tracking-id": null}',
    ):
        headers = amqp_headers(event_of(body, "json"))
        assert headers == {"code": "N003", "origin": "MMS_MT", "status": "transcoded"}
        assert None not in headers.values()
