"""infra/*.tf declares what the code expects: every function, route, environment variable and message it relies on.

terraform validate/plan cannot run offline (no provider download), so these tests read the HCL with python-hcl2 and
compare it with shared.topology, shared.config and shared.schedule.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest
from infra_hcl import INFRA, REPO, block, load_build_bundles, load_infra, reference, render, string_list

from shared import topology
from shared.config import read_settings
from shared.schedule import parse_schedule_request

_EVENT_DRIVEN_MAX_TIMEOUT_S = 540
_PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
# Read by functions-framework itself, not by shared/config.py.
_FRAMEWORK_ENV = {"LOG_EXECUTION_ID"}
_IAM_RESOURCE_TYPES = (
    "google_cloudfunctions2_function_iam_member",
    "google_cloudfunctions2_function_iam_binding",
    "google_cloudfunctions_function_iam_member",
    "google_cloudfunctions_function_iam_binding",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
)


@pytest.fixture(scope="module")
def tf():
    return load_infra()


@pytest.fixture(scope="module")
def variable_defaults(tf):
    return {name: body.get("default") for name, body in tf.variables.items()}


def _route_by_topic() -> dict[str, topology.Route]:
    return {route.topic: route for route in topology.ROUTES}


def _env_names_read_by_config() -> set[str]:
    source = (REPO / "shared" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(r"""_env(?:_int|_float)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))


def _max_instance_defaults(tf) -> dict[str, int]:
    type_text = tf.variables["function_max_instances"]["type"]
    return {name: int(value) for name, value in re.findall(r"(\w+)\s*=\s*optional\(number,\s*(\d+)\)", type_text)}


# --- functions -------------------------------------------------------------------------------------------------------

def test_every_function_in_topology_is_declared_with_its_entry_point(tf):
    declared = {name: f["entry_point"] for name, f in tf.locals["functions"].items()}

    assert declared == topology.ALL_FUNCTIONS


def test_the_function_resource_deploys_each_declared_function_from_its_own_bundle(tf):
    function = tf.resource("google_cloudfunctions2_function", "function")
    build = block(function["build_config"])
    source = block(block(build["source"])["storage_source"])
    bundle = tf.resource("google_storage_bucket_object", "bundle")

    assert reference(function["for_each"]) == "local.functions"
    assert build["entry_point"] == "${each.value.entry_point}"
    assert source["object"] == "${google_storage_bucket_object.bundle[each.key].name}"
    assert reference(bundle["for_each"]) == "local.functions"
    assert bundle["source"] == "${local.bundle_dir}/${each.key}.zip"
    # The object is named after the bundle's content hash, so a code change redeploys the function.
    assert "filesha256(" in bundle["name"] and "${each.key}.zip" in bundle["name"]


def test_bundles_come_from_the_folder_build_bundles_writes(tf):
    default_out = load_build_bundles()._DEFAULT_OUT.relative_to(REPO).as_posix()

    assert tf.locals["bundle_dir"] == "${path.module}/../" + default_out


def test_every_function_runtime_is_pinned_to_python311(tf):
    for name, function in tf.resources_of_type("google_cloudfunctions2_function").items():
        assert block(function["build_config"])["runtime"] == "python311", name


def test_event_driven_functions_time_out_within_540_s_and_their_ack_deadline(tf):
    function = tf.resource("google_cloudfunctions2_function", "function")
    service = block(function["service_config"])
    routes = _route_by_topic()

    assert service["timeout_seconds"] == "${each.value.timeout_s}"
    for route in routes.values():
        timeout = tf.locals["functions"][route.function]["timeout_s"]
        assert timeout <= _EVENT_DRIVEN_MAX_TIMEOUT_S, route.function
        assert timeout <= route.ack_deadline_s, f"{route.function} would be redelivered while still running"
    for name in topology.HTTP_FUNCTIONS:
        assert tf.locals["functions"][name]["timeout_s"] <= 60


def test_functions_serve_one_request_per_instance_and_scale_to_zero(tf):
    service = block(tf.resource("google_cloudfunctions2_function", "function")["service_config"])

    assert service["max_instance_request_concurrency"] == 1
    assert service["min_instance_count"] == 0
    assert service["max_instance_count"] == "${each.value.max_instances}"
    for name, f in tf.locals["functions"].items():
        assert f["max_instances"] == f"${{var.function_max_instances.{name}}}"


def test_default_instance_limits_fit_the_cloud_sql_connection_budget(tf, variable_defaults):
    limits = _max_instance_defaults(tf)
    db_functions = [name for name, f in tf.locals["functions"].items() if f["uses_db"]]
    reserved_for_superuser, migrations, operator = 3, 1, 2

    assert variable_defaults["db_tier"] == "db-f1-micro"
    assert set(limits) == set(topology.ALL_FUNCTIONS)
    # One pooled connection per instance (concurrency 1), and room left for max_instance_count's brief overshoot.
    assert sum(limits[name] for name in db_functions) + reserved_for_superuser + migrations + operator <= 25 - 5


def test_default_instance_limits_let_four_accounts_run_side_by_side(tf):
    # One message of each active account at a time per ordered route (ADR 014): an account without an instance
    # waits, so every ordered route's function has at least one instance for each of four accounts.
    limits = _max_instance_defaults(tf)
    ordered = [route.function for route in topology.ROUTES if route.ordered_by_account]
    assert ordered == ["lister", "detail", "enrich"]
    assert min(limits[name] for name in ordered) >= 4


# --- environment -----------------------------------------------------------------------------------------------------

def test_every_environment_variable_set_on_a_function_is_read_by_shared_config(tf):
    env_maps = {name: value for name, value in tf.locals.items() if name.startswith("env_")}
    set_names = {key for env in env_maps.values() for key in env}
    secret_names = {secret["env"] for secret in tf.locals["secrets"].values()}

    assert env_maps, "no env_* locals found"
    assert (set_names | secret_names) - _FRAMEWORK_ENV <= _env_names_read_by_config()


def test_functions_get_the_settings_they_cannot_default(tf):
    set_names = {key for name, env in tf.locals.items() if name.startswith("env_") for key in env}
    secret_names = {secret["env"] for secret in tf.locals["secrets"].values()}

    assert {"GOOGLE_CLOUD_PROJECT", "CLOUD_SQL_INSTANCE", "DB_NAME", "DB_USER", "BLING_RATE_BUDGET_PER_S",
            "AUTH_PUBLIC_URL", "LOG_EXECUTION_ID"} <= set_names
    assert secret_names == {"BLING_CLIENT_ID", "BLING_CLIENT_SECRET", "DB_PASSWORD", "BLING_TOKEN_KEY",
                            "AUTH_ADMIN_KEY"}
    assert tf.locals["env_common"]["LOG_EXECUTION_ID"] == "true"


def test_each_function_reads_only_the_secrets_it_needs(tf):
    # Rendered from the expression in secrets.tf for each function's flags in main.tf.
    expected = {
        "scheduler": {"bling-db-password"},
        "lister": {"bling-client-id", "bling-client-secret", "bling-token-key", "bling-db-password"},
        "detail": {"bling-client-id", "bling-client-secret", "bling-token-key", "bling-db-password"},
        "enrich": {"bling-client-id", "bling-client-secret", "bling-token-key", "bling-db-password"},
        "auth": {"bling-client-id", "bling-client-secret", "bling-token-key", "bling-auth-admin-key"},
    }
    expression = tf.locals["function_secrets"]
    bling = string_list(re.search(r"f\.uses_bling \? (\[[^\]]*\])", expression).group(1).join(["${x(", ")}"]))
    db = string_list(re.search(r"f\.uses_db \? (\[[^\]]*\])", expression).group(1).join(["${x(", ")}"]))
    auth_only = re.search(r'name == "(\w+)" \? (\[[^\]]*\])', expression)
    for name, f in tf.locals["functions"].items():
        granted = set(bling if f["uses_bling"] else []) | set(db if f["uses_db"] else [])
        if name == auth_only.group(1):
            granted |= set(string_list(auth_only.group(2).join(["${x(", ")}"])))
        assert granted == expected[name], name


def test_secret_values_never_enter_terraform(tf, variable_defaults):
    assert not tf.resources_of_type("google_secret_manager_secret_version")
    user = tf.resource("google_sql_user", "etl")
    assert "password" not in user
    # Write-only (never in plan or state), read from Secret Manager by an ephemeral resource at apply time.
    assert user["password_wo"] == "${ephemeral.google_secret_manager_secret_version.db_password.secret_data}"
    assert user["password_wo_version"] == "${var.db_password_rotation}"
    assert set(tf.locals["secrets"]) == {"bling-client-id", "bling-client-secret", "bling-db-password",
                                         "bling-token-key", "bling-auth-admin-key"}
    assert variable_defaults["secret_versions"] == {}
    assert re.findall(r'optional\(string,\s*"latest"\)', tf.variables["secret_versions"]["type"])


def test_rate_budget_default_matches_shared_config(variable_defaults):
    from shared.config import get_settings

    assert variable_defaults["bling_rate_budget_per_s"] == get_settings().rate_budget_per_s


# --- Pub/Sub ---------------------------------------------------------------------------------------------------------

def test_every_route_is_declared_with_its_delivery_settings(tf):
    declared = tf.locals["routes"]

    assert set(declared) == set(_route_by_topic())
    for topic, route in _route_by_topic().items():
        assert declared[topic] == {
            "function": route.function,
            "max_delivery_attempts": route.max_delivery_attempts,
            "minimum_backoff_s": route.min_backoff_s,
            "maximum_backoff_s": route.max_backoff_s,
            "ack_deadline_s": route.ack_deadline_s,
            "message_ordering": route.ordered_by_account,
        }, topic


def test_every_route_has_its_topic_and_dead_letter_topic(tf):
    topic = tf.resource("google_pubsub_topic", "topic")
    dead_letter = tf.resource("google_pubsub_topic", "dead_letter")

    assert reference(topic["for_each"]) == reference(dead_letter["for_each"]) == "local.routes"
    for name, route in _route_by_topic().items():
        assert render(topic["name"], name) == route.topic
        assert render(dead_letter["name"], name) == route.dead_letter_topic


def test_every_route_has_a_push_subscription_with_retry_and_dead_letter_policy(tf):
    push = tf.resource("google_pubsub_subscription", "push")
    retry = block(push["retry_policy"])
    dead_letter = block(push["dead_letter_policy"])
    push_config = block(push["push_config"])

    assert reference(push["for_each"]) == "local.routes"
    assert push["topic"] == "${google_pubsub_topic.topic[each.key].id}"
    assert dead_letter["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[each.key].id}"
    assert push_config["push_endpoint"] == (
        "${google_cloudfunctions2_function.function[each.value.function].service_config[0].uri}")
    assert block(push_config["oidc_token"])["service_account_email"] == "${google_service_account.invoker.email}"
    for topic, route in _route_by_topic().items():
        values = tf.locals["routes"][topic]
        assert render(push["name"], topic) == route.subscription
        assert int(render(str(push["ack_deadline_seconds"]), topic, values)) == route.ack_deadline_s
        assert render(retry["minimum_backoff"], topic, values) == f"{route.min_backoff_s}s"
        assert render(retry["maximum_backoff"], topic, values) == f"{route.max_backoff_s}s"
        assert int(render(str(dead_letter["max_delivery_attempts"]), topic, values)) == route.max_delivery_attempts
    assert push["enable_message_ordering"] == "${each.value.message_ordering}"


def test_every_dead_letter_topic_has_a_hold_subscription_that_keeps_messages_7_days(tf):
    hold = tf.resource("google_pubsub_subscription", "dead_letter_hold")

    assert reference(hold["for_each"]) == "local.routes"
    assert hold["topic"] == "${google_pubsub_topic.dead_letter[each.key].id}"
    assert "push_config" not in hold
    assert tf.locals[reference(hold["message_retention_duration"]).removeprefix("local.")] == "604800s"
    for topic, route in _route_by_topic().items():
        assert render(hold["name"], topic) == route.dead_letter_subscription


def test_pubsub_service_agent_can_dead_letter(tf):
    publisher = tf.resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    subscriber = tf.resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")

    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in tf.locals["pubsub_service_agent"]
    assert (publisher["role"], publisher["member"]) == ("roles/pubsub.publisher", "${local.pubsub_service_agent}")
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter[each.key].name}"
    assert (subscriber["role"], subscriber["member"]) == ("roles/pubsub.subscriber", "${local.pubsub_service_agent}")
    assert subscriber["subscription"] == "${google_pubsub_subscription.push[each.key].name}"


def test_functions_publish_only_to_route_topics(tf):
    topics = set(_route_by_topic())
    for name, f in tf.locals["functions"].items():
        assert set(f["publishes_to"]) <= topics, name


def test_workers_have_no_eventarc_trigger(tf):
    function = tf.resource("google_cloudfunctions2_function", "function")

    assert "event_trigger" not in function
    assert "eventarc.googleapis.com" not in string_list(tf.locals["apis"])


# --- exposure --------------------------------------------------------------------------------------------------------

def test_only_the_http_functions_are_public(tf, variable_defaults):
    public = {name for name, f in tf.locals["functions"].items() if f["public"]}
    service = block(tf.resource("google_cloudfunctions2_function", "function")["service_config"])

    assert public == set(topology.HTTP_FUNCTIONS) == {"auth"}
    assert service["ingress_settings"] == '${each.value.public ? "ALLOW_ALL" : var.worker_ingress}'
    assert variable_defaults["worker_ingress"] == "ALLOW_INTERNAL_ONLY"


def test_no_iam_grant_makes_a_function_other_than_auth_public(tf):
    public_grants = []
    for type_ in _IAM_RESOURCE_TYPES:
        for name, body in tf.resources_of_type(type_).items():
            members = set(body.get("members") or []) | {body.get("member")}
            if members & _PUBLIC_MEMBERS:
                public_grants.append((type_, name, body.get("name") or body.get("cloud_function")))

    assert public_grants == [
        ("google_cloud_run_v2_service_iam_member", "auth_public",
         '${google_cloudfunctions2_function.function["auth"].name}'),
    ]


def test_only_the_push_invoker_may_invoke_the_workers(tf):
    invoker = tf.resource("google_cloud_run_v2_service_iam_member", "push_invoker")

    assert reference(invoker["for_each"]) == "local.worker_functions"
    assert tf.locals["worker_functions"] == "${{for name, f in local.functions : name => f if !f.public}}"
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", "${google_service_account.invoker.member}")


# --- scheduler, Firestore, monitoring ---------------------------------------------------------------------------------

def test_daily_job_publishes_a_valid_schedule_message(tf, variable_defaults):
    job = tf.resource("google_cloud_scheduler_job", "job")
    target = block(job["pubsub_target"])
    message = tf.locals["daily_message"].encode("utf-8")

    assert job["name"] == "bling-daily"
    assert variable_defaults["daily_schedule"] == "0 6 * * *"
    assert job["time_zone"] == "${var.timezone}" and variable_defaults["timezone"] == "America/Sao_Paulo"
    assert target["topic_name"] == f'${{google_pubsub_topic.topic["{topology.SCHEDULE.topic}"].id}}'
    assert target["data"] == "${base64encode(local.daily_message)}"
    assert json.loads(message) == {"daily": True}
    assert parse_schedule_request(message, read_settings()).kind == "daily"


def test_firestore_ttl_covers_the_short_lived_collections(tf, variable_defaults):
    ttl = tf.resource("google_firestore_field", "expire_at_ttl")
    collections = {render(c, "", variables=variable_defaults)
                   for c in string_list(tf.locals["firestore_ttl_collections"])}

    assert reference(ttl["for_each"]) == "local.firestore_ttl_collections"
    assert ttl["collection"] == "${each.key}"
    assert ttl["field"] == "expire_at"
    assert collections == {f"bling_{c.name}" for c in topology.COLLECTIONS if c.ttl is not None}
    assert {"bling_oauth_states", "bling_oauth_codes", "bling_rate_ticks", "bling_enrich_claims"} <= collections
    assert tf.resource("google_firestore_database", "main")["name"] == "(default)"


def test_dashboard_and_metrics_watch_the_events_the_functions_log(tf):
    nfe = tf.resource("google_logging_metric", "nfe_stored")
    requests = tf.resource("google_logging_metric", "bling_requests")
    dead_letters = tf.resource("google_monitoring_alert_policy", "dead_letters")

    assert 'jsonPayload.event=\\"nfe_stored\\"' in nfe["filter"] or 'jsonPayload.event="nfe_stored"' in nfe["filter"]
    assert "bling_request" in requests["filter"]
    assert "-dead-letter-hold" in json.dumps(dead_letters)
    assert tf.resource("google_monitoring_dashboard", "main")


# --- module hygiene --------------------------------------------------------------------------------------------------

def test_every_variable_is_typed_and_described_and_every_output_described(tf):
    for name, body in tf.variables.items():
        assert body.get("type") and body.get("description"), f"variable {name}"
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name}"


def test_providers_are_pinned_exactly_and_locked(tf):
    settings = tf.terraform[0]
    providers = block(settings["required_providers"])
    lock = (INFRA / ".terraform.lock.hcl").read_text(encoding="utf-8")

    # Write-only arguments and ephemeral resources need Terraform 1.11; cloudbuild.yaml's image is that version.
    assert settings["required_version"] == ">= 1.11"
    assert "hashicorp/terraform:1.11.4" in (REPO / "cloudbuild.yaml").read_text(encoding="utf-8")
    for name, spec in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"]), name
        pattern = r'provider "registry.terraform.io/{}" \{{\s*version\s*=\s*"([^"]+)"'.format(spec["source"])
        locked = re.search(pattern, lock)
        assert locked and locked.group(1) == spec["version"], name


def test_auth_urls_are_output_for_the_bling_app_and_the_runbook(tf):
    assert tf.outputs["auth_callback_url"]["value"] == "${local.auth_public_url}/callback"
    assert "auth_start_url" in tf.outputs
    assert tf.locals["auth_public_url"].endswith("${var.name_prefix}-auth")


def test_example_tfvars_only_sets_declared_variables(tf):
    text = (INFRA / "terraform.tfvars.example").read_text(encoding="utf-8")
    names = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.M))
    nested = {"scheduler", "lister", "detail", "enrich", "auth", "db_password"}

    assert names - nested <= set(tf.variables)
