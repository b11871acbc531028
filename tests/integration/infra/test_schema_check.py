"""infra/schema_check.py catches each kind of mistake the provider would reject, planted in a copy of infra/.

Each case edits one real line of infra/*.tf the way a person could get it wrong, and expects the schema check
to name it; the untouched copy must pass. The schema is the pinned provider's (infra/provider_schema.py), fetched
from npm on the first run (a few seconds) and cached in build/provider-schema/.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest
from infra_hcl import INFRA, REPO

_SCHEMAS = REPO / "build" / "provider-schema"


@pytest.fixture(scope="module")
def schemas() -> pathlib.Path:
    subprocess.run([sys.executable, str(INFRA / "provider_schema.py"), "--cache", str(_SCHEMAS)], check=True,
                   capture_output=True, timeout=900)
    return _SCHEMAS


def _check(folder: pathlib.Path, schemas: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(INFRA / "schema_check.py"), "--schemas", str(schemas),
                           "--dir", str(folder)], capture_output=True, text=True, timeout=120)


def _planted(tmp_path: pathlib.Path, filename: str, old: str, new: str) -> pathlib.Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    text = (copy / filename).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {filename} for the plant to be unambiguous"
    (copy / filename).write_text(text.replace(old, new), encoding="utf-8")
    return copy


def test_infra_passes_the_schema_check(schemas):
    result = _check(INFRA, schemas)

    assert result.returncode == 0, result.stderr
    assert "schema check: ok against google 6.50.0" in result.stdout


_PLANTS = {
    "unknown argument": (
        "cloudsql.tf", "disk_autoresize   = true", "disk_autoresize_enabled = true",
        'resource google_sql_database_instance.main.settings: the provider has no argument "disk_autoresize_enabled"'),
    "unknown nested block": (
        "pubsub.tf", "  retry_policy {", "  retry_polcy {",
        'resource google_pubsub_subscription.push: the provider has no block "retry_polcy"'),
    "missing required argument": (
        "cloudsql.tf", '  name     = "bling"\n', "",
        'resource google_sql_database.main: required argument "name" is missing'),
    "missing required block": (
        "scheduler.tf", "  pubsub_target {\n    topic_name", "  pubsub_target {\n    topic_nme",
        'resource google_cloud_scheduler_job.job.pubsub_target: required argument "topic_name" is missing'),
    "attribute written as a block": (
        "monitoring.tf", "  labels = {\n    email_address = each.key\n  }",
        "  labels {\n    email_address = each.key\n  }",
        'resource google_monitoring_notification_channel.email: "labels" is an argument, written as a block'),
    "block written as an attribute": (
        "storage.tf", "  versioning {\n    enabled = true\n  }", "  versioning = {\n    enabled = true\n  }",
        'resource google_storage_bucket.source: "versioning" is a block, written as an argument'),
    "single block written twice": (
        "storage.tf", "  versioning {\n    enabled = true\n  }",
        "  versioning {\n    enabled = true\n  }\n  versioning {\n    enabled = false\n  }",
        'resource google_storage_bucket.source: block "versioning" is written 2 times'),
    "string where a number is expected": (
        "pubsub.tf", "  ack_deadline_seconds       = 60\n", '  ack_deadline_seconds       = "sixty"\n',
        "resource google_pubsub_subscription.dead_letter_hold.ack_deadline_seconds: '\"sixty\"' is not a number"),
    "number where a bool is expected": (
        "cloudsql.tf", "ipv4_enabled = true", "ipv4_enabled = 1",
        "ip_configuration.ipv4_enabled: 1 is not a bool"),
    "list where a map is expected": (
        "monitoring.tf", "  labels = {\n    email_address = each.key\n  }", '  labels = ["ops@example.com"]',
        "resource google_monitoring_notification_channel.email.labels: a list literal where the provider expects "
        "a map"),
    "unknown resource type": (
        "cloudsql.tf", 'resource "google_sql_user" "etl"', 'resource "google_sql_usr" "etl"',
        'resource google_sql_usr.etl: provider 6.50.0 has no resource "google_sql_usr"'),
    "argument unknown in a dynamic block": (
        "functions.tf", "        project_id = var.project_id\n", "        project_name = var.project_id\n",
        "google_cloudfunctions2_function.function.service_config.secret_environment_variables: the provider has no "
        'argument "project_name"'),
    "missing required argument of the egress NAT": (
        "network.tf", '  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"\n', "",
        'resource google_compute_router_nat.egress: required argument "source_subnetwork_ip_ranges_to_nat" is missing'),
    "misspelt egress setting of the functions": (
        "functions.tf", "    vpc_connector_egress_settings = ", "    vpc_egress_settings = ",
        'resource google_cloudfunctions2_function.function.service_config: the provider has no argument '
        '"vpc_egress_settings"'),
    "connector subnet written as another block": (
        "network.tf", "  subnet {\n    name       = google_compute_subnetwork",
        "  subnetwork {\n    name       = google_compute_subnetwork",
        'resource google_vpc_access_connector.egress: the provider has no block "subnetwork"'),
    "provider pinned to a version other than the schema's": (
        "versions.tf", 'version = "6.50.0"', 'version = "6.49.0"',
        'provider google pinned to "6.49.0", but the schema checked is 6.50.0'),
}


@pytest.mark.parametrize("case", sorted(_PLANTS))
def test_schema_check_catches_a_planted_error(case, schemas, tmp_path):
    filename, old, new, expected = _PLANTS[case]
    copy = _planted(tmp_path, filename, old, new)

    result = _check(copy, schemas)

    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
