"""infra/check_offline.sh passes on infra/, and the project's checkov policies catch what they are written for.

The first run creates .venv-checkov/ and installs checkov into it (about a minute).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest
from infra_hcl import INFRA, REPO

_SCRIPT = INFRA / "check_offline.sh"
_VIOLATIONS = pathlib.Path(__file__).resolve().parent / "fixtures" / "policy_violations"
_CHECKOV_VENV = pathlib.Path(os.environ.get("CHECKOV_VENV", REPO / ".venv-checkov"))


@pytest.fixture(scope="module")
def offline_check() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(_SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_offline_checks_pass_on_infra(offline_check):
    output = offline_check.stdout + offline_check.stderr

    assert offline_check.returncode == 0, output
    assert "checkov: ok" in output
    assert "schema check: ok against google 6.50.0 (@cdktf/provider-google@16.12.1)" in output
    assert "terraform fmt: ok" in output or "terraform fmt: skipped: terraform not installed" in output


def _checkov_results(folder: pathlib.Path) -> dict[tuple[str, str], str]:
    result = subprocess.run(
        [str(_CHECKOV_VENV / "bin" / "checkov"), "-d", str(folder), "--framework", "terraform", "--skip-download",
         "--external-checks-dir", str(INFRA / "policies"), "--check",
         "CKV2_BLING_1,CKV2_BLING_2,CKV2_BLING_3,CKV2_BLING_4,CKV2_BLING_5", "--output", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    outcome = {}
    for status, key in (("PASSED", "passed_checks"), ("FAILED", "failed_checks")):
        for check in report["results"][key]:
            outcome[(check["check_id"], check["resource"])] = status
    return outcome


def test_project_policies_reject_the_violations_they_are_written_for(offline_check):
    assert offline_check.returncode == 0, offline_check.stdout + offline_check.stderr

    outcome = _checkov_results(_VIOLATIONS)

    assert outcome == {
        ("CKV2_BLING_1", "google_pubsub_subscription.push_no_dlq"): "FAILED",
        ("CKV2_BLING_1", "google_pubsub_subscription.pull"): "PASSED",
        ("CKV2_BLING_2", "google_cloud_run_v2_service_iam_member.public_worker"): "FAILED",
        ("CKV2_BLING_2", "google_cloud_run_v2_service_iam_member.public_auth"): "PASSED",
        ("CKV2_BLING_2", "google_cloudfunctions2_function_iam_member.private"): "PASSED",
        ("CKV2_BLING_3", "google_cloudfunctions2_function.wrong_runtime"): "FAILED",
        ("CKV2_BLING_4", "google_cloudfunctions2_function_iam_binding.public_binding"): "FAILED",
        ("CKV2_BLING_5", "google_compute_router_nat.auto_addresses"): "FAILED",
        ("CKV2_BLING_5", "google_compute_router_nat.reserved_address"): "PASSED",
    }
