"""The shipped OpenAPI document against the running receiver (contract section 8).

schemathesis reads ``ingest/contract/openapi.yaml``, generates requests for every operation
and checks each answer: no server error, a status code the document lists, its content
type, its headers (``Retry-After``, ``WWW-Authenticate``, ``Allow``) and its body schema.
It runs against real ``postbacks receive`` processes, configured so that every answer of the
contract's table occurs: one with basic auth and a small ``INGEST_MAX_BODY`` (200, 400,
401, 405, 413, 415), one whose broker is away (503), one whose ``INGEST_ALLOW_FROM``
excludes the test (403).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ingest.contract import OPENAPI
from tests.integration._helpers import closed_port_url
from tests.support import ROOT, Stack, free_port, wait_http

DOCUMENT = ROOT / "ingest" / "contract" / OPENAPI
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
SEED = os.environ.get("SCHEMATHESIS_SEED", "14")
USER, PASSWORD = "sinch", "s3cret"


def schemathesis() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    if found.exists():
        return str(found)
    which = shutil.which("schemathesis")
    assert which, "schemathesis is not installed: pip install -e '.[dev]' (make test does)"
    return which


@dataclass
class Run:
    label: str
    exit_code: int
    output: str
    report: dict[str, object]
    statuses: collections.Counter[tuple[str, str, int]]


async def run_schemathesis(
    label: str, base: str, tmp: Path, examples: int, *extra: str, allow_503: bool = False
) -> Run:
    """One schemathesis run; ``allow_503`` where the broker is away, so that ``503`` is the
    contract's answer there and not a server error (any other 5xx still is one)."""
    report, har = tmp / f"{label}.json", tmp / f"{label}.har"
    config = tmp / f"{label}.toml"
    statuses = '"2xx", "3xx", "4xx"' + (', "503"' if allow_503 else "")
    config.write_text(f"[checks.not_a_server_error]\nexpected-statuses = [{statuses}]\n")
    process = await asyncio.create_subprocess_exec(
        schemathesis(),
        "--config-file",
        str(config),
        "run",
        str(DOCUMENT),
        "--url",
        base,
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--seed",
        SEED,
        "--no-color",
        "--generation-database",
        "none",
        "--report",
        "json,har",
        "--report-json-path",
        str(report),
        "--report-har-path",
        str(har),
        *extra,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    seen = collections.Counter(
        (
            entry["request"]["method"],
            "/" + entry["request"]["url"].split("/", 3)[3].split("?")[0],
            entry["response"]["status"],
        )
        for entry in entries
    )
    summary = json.loads(report.read_text()) if report.exists() else {}
    return Run(label, process.returncode or 0, out.decode(errors="replace"), summary, seen)


async def receiver(processes: Stack, **env: str | int) -> str:
    port = free_port()
    processes.start("receive", INGEST_HOST="127.0.0.1", INGEST_PORT=port, **env)
    base = f"http://127.0.0.1:{port}"
    await wait_http(f"{base}/healthz", 200, timeout=20)
    return base


async def test_the_receiver_conforms_to_its_openapi_document(
    processes: Stack, tmp_path: Path
) -> None:
    auth = f"{USER}:{PASSWORD}"
    guarded = await receiver(processes, INGEST_BASIC_AUTH=auth, INGEST_MAX_BODY=200)
    await wait_http(f"{guarded}/readyz", 200, timeout=20)
    brokerless = await receiver(processes, AMQP_URL=closed_port_url(), INGEST_CONFIRM_TIMEOUT=1)
    outsider = await receiver(processes, INGEST_ALLOW_FROM="192.0.2.0/24")
    runs = await asyncio.gather(
        run_schemathesis("authorized", guarded, tmp_path, 40, "--auth", auth),
        run_schemathesis("unauthorized", guarded, tmp_path, 5),
        run_schemathesis("broker-away", brokerless, tmp_path, 5, allow_503=True),
        run_schemathesis("forbidden", outsider, tmp_path, 5),
    )
    for run in runs:
        assert run.exit_code == 0, f"schemathesis ({run.label}) found failures:\n{run.output}"
        cases = run.report.get("test_cases")
        assert isinstance(cases, dict), run.output
        assert cases["generated"] > 0, run.output
        assert cases["with_failures"] == 0 and cases["errored"] == 0, run.output
    seen = collections.Counter[tuple[str, str, int]]()
    for run in runs:
        seen.update(run.statuses)
    answered = {status for method, path, status in seen if (method, path) == ("POST", "/postbacks")}
    # Every answer of the contract's table occurred, and each was checked against the document.
    assert {200, 400, 401, 403, 413, 415, 503} <= answered, sorted(seen.items())
    assert {status for _m, path, status in seen if path == "/readyz"} >= {200, 503}
    assert any(status == 405 for _m, path, status in seen if path == "/postbacks")
    print(
        "schemathesis:",
        sum(seen.values()),
        "requests:",
        ", ".join(f"{m} {p} {s}: {n}" for (m, p, s), n in sorted(seen.items())),
    )
