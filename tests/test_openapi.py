"""The API's OpenAPI document as integrators' tools read it: a valid OpenAPI 3 document, and one
that Spectral's recommended rules (spectral:oas, .spectral.yaml) pass with no error and no
warning. Spectral is a Node program that .ci/run installs into .ci/node_modules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from openapi_spec_validator import validate

from tests.helpers import ROOT

SPECTRAL = ROOT / ".ci" / "node_modules" / ".bin" / "spectral"
# Spectral's severities; errors and warnings count, information and hints do not.
SEVERITIES = {0: "error", 1: "warning", 2: "info", 3: "hint"}


@pytest.fixture
def served(db: None) -> bytes:
    """The document as served: Spectral reads these bytes (a key twice is an error there,
    which a parsed dict would hide)."""
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.content


@pytest.fixture
def document(served: bytes) -> dict[str, Any]:
    return json.loads(served)  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises, saying where, at the first problem


def spectral_findings(document: bytes, folder: Path) -> list[str]:
    """What Spectral finds in `document` with the project's ruleset, a line each."""
    if not SPECTRAL.exists():
        pytest.fail(f"Spectral is not installed: .ci/run installs it ({SPECTRAL} is missing).")
    path, report = folder / "openapi.json", folder / "spectral.json"
    path.write_bytes(document)
    run = subprocess.run(
        [
            str(SPECTRAL), "lint", str(path), "--ruleset", str(ROOT / ".spectral.yaml"),
            "--format", "json", "--output", str(report), "--fail-severity", "error",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # 0: nothing at error level; 1: errors found. Anything else: Spectral itself failed.
    assert run.returncode in (0, 1) and report.exists(), run.stdout + run.stderr
    return [
        f"{SEVERITIES[f['severity']]} {f['code']} at {'.'.join(map(str, f['path']))}: "
        f"{f['message']}"
        for f in json.loads(report.read_text())
        if f["severity"] <= 1
    ]


def test_spectral_finds_no_error_and_no_warning(served: bytes, tmp_path: Path) -> None:
    findings = spectral_findings(served, tmp_path)
    if findings:
        pytest.fail(f"Spectral found {len(findings)}:\n" + "\n".join(findings), pytrace=False)


def test_spectral_would_say_so_of_a_document_without_tags_or_descriptions(
    document: dict[str, Any], tmp_path: Path
) -> None:
    # The check can fail: the same document, less what the rules ask for, is reported.
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("tags", None)
            operation.pop("description", None)
    document["info"].pop("contact", None)
    findings = spectral_findings(json.dumps(document).encode(), tmp_path)
    assert any(f.startswith("warning operation-tags at paths./api/v1/me.get") for f in findings)
    assert any(f.startswith("warning info-contact at info") for f in findings)
