"""Sinch's postback codes mapped to (family, status, final), as the contract's table says."""

from __future__ import annotations

from typing import NamedTuple


class Classification(NamedTuple):
    family: str
    status: str
    final: bool


CODE_TABLE: dict[str, Classification] = {
    "N101": Classification("delivery", "sent", False),
    "N102": Classification("delivery", "delivered", True),
    "N103": Classification("delivery", "expired", True),
    "E101": Classification("delivery", "failed", True),
    # E102 and E502 are refined by the status text: see classify().
    "E102": Classification("delivery", "rejected", True),
    "N202": Classification("delivery", "delivered", True),
    "E202": Classification("delivery", "failed", True),
    "E999": Classification("delivery", "error", True),
    "N003": Classification("template", "transcoded", True),
    "E002": Classification("template", "transcoding_failed", True),
    "E003": Classification("template", "transcoding_failed", True),
    "E004": Classification("template", "transcoding_failed", True),
    "N013": Classification("send", "transcoded", False),
    "E011": Classification("send", "validation_failed", True),
    "E012": Classification("send", "transcoding_failed", True),
    "E013": Classification("send", "transcoding_failed", True),
    "N401": Classification("inbound", "received", True),
    "N501": Classification("discovery", "sent", False),
    "N502": Classification("discovery", "delivered", True),
    "E501": Classification("discovery", "failed", True),
    "E502": Classification("discovery", "rejected", True),
}

UNKNOWN = Classification("unknown", "unknown", False)

_REFINED_BY_TEXT = frozenset({"E102", "E502"})


def classify(code: str, status_text: str | None) -> Classification:
    """Family, status and finality of an upper-case ``code``.

    E102 and E502 say ``expired`` when Sinch's status text contains "expired", ``failed``
    when it contains "failed" (either case), else ``rejected``. Unknown codes are
    ``unknown``: Sinch adds codes, and an unknown code is still an event.
    """
    known = CODE_TABLE.get(code)
    if known is None:
        return UNKNOWN
    if code in _REFINED_BY_TEXT:
        text = (status_text or "").lower()
        if "expired" in text:
            return known._replace(status="expired")
        if "failed" in text:
            return known._replace(status="failed")
    return known
