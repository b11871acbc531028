# The five functions: four workers pushed by Pub/Sub (pubsub.tf) and the public OAuth function.
#
# Instance limits, connections and the Bling budget (defaults of var.function_max_instances):
#   Every instance serves one request at a time (concurrency 1) and keeps a pool of one Cloud SQL connection.
#   DB connections at full scale-out: scheduler 1 + lister 4 + detail 5 + enrich 4 = 14.
#   db-f1-micro allows 25, of which Cloud SQL reserves 3 for its superuser: 22 usable.
#   14 + 1 (migrations from Cloud Build) + 2 (an operator's psql) = 17, leaving 5 for max_instance_count's brief
#   overshoot during a traffic surge (Cloud Functions may exceed it for a short time).
#   Bling allows 3 requests/s per account. One account's instances share its budget of BLING_RATE_BUDGET_PER_S
#   (2.8/s) through Firestore, so more instances do not mean more requests for it; they are for several accounts
#   backfilling at once: while two or more are active, Pub/Sub pushes one message of each account at a time to each
#   of lister, detail and enrich (ordering keys, docs/decisions/014), so these limits let four accounts list, and
#   their detail and enrich run, side by side. A single active account's messages carry no key: all five detail
#   instances may work on it. The scheduler only fans messages out: one instance. At ~1,200 NF-e a year the daily
#   runs need a few dozen requests per account; the limits exist for backfills.

locals {
  env_common = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    ETL_TIMEZONE         = var.timezone
    LOG_EXECUTION_ID     = "true" # read by functions-framework: adds labels.execution_id to every log line
  }

  env_firestore = {
    FIRESTORE_PREFIX = var.firestore_prefix
  }

  env_db = {
    CLOUD_SQL_INSTANCE = google_sql_database_instance.main.connection_name
    DB_NAME            = google_sql_database.main.name
    DB_USER            = google_sql_user.etl.name
  }

  # BLING_FLEET_*: the fleet-wide cap under Bling's per-IP limits, shared by every account (network.tf). On with a
  # static egress IP, where every request of every account leaves from one address; 0 (off) without, where each
  # instance leaves from Google's pool and no one address carries the whole fleet.
  env_bling = {
    BLING_RATE_BUDGET_PER_S    = tostring(var.bling_rate_budget_per_s)
    AUTH_PUBLIC_URL            = local.auth_public_url
    BLING_FLEET_RATE_PER_S     = var.static_egress_ip ? tostring(var.bling_fleet_rate_per_s) : "0"
    BLING_FLEET_ERRORS_PER_10S = var.static_egress_ip ? tostring(var.bling_fleet_errors_per_10s) : "0"
  }

  function_env = {
    for name, f in local.functions : name => merge(
      local.env_common,
      f.uses_firestore ? local.env_firestore : {},
      f.uses_db ? local.env_db : {},
      f.uses_bling ? local.env_bling : {},
    )
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-${each.key}"
  description = each.value.description

  build_config {
    runtime         = "python311"
    entry_point     = each.value.entry_point
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  # No event_trigger: the workers are HTTP functions that Pub/Sub pushes to (ADR 002); functions-framework turns the
  # push body into a CloudEvent for their @cloud_event handlers.
  service_config {
    available_memory                 = var.function_memory
    timeout_seconds                  = each.value.timeout_s
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = each.value.public ? "ALLOW_ALL" : var.worker_ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.function_env[each.key]
    # With var.static_egress_ip every request, Bling's included, leaves through the connector and Cloud NAT's one
    # address (network.tf); without, the function egresses from Google's pool directly.
    vpc_connector                 = var.static_egress_ip ? google_vpc_access_connector.egress[0].id : null
    vpc_connector_egress_settings = var.static_egress_ip ? "ALL_TRAFFIC" : null

    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets[each.key])

      content {
        key        = local.secrets[secret_environment_variables.key].env
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.key].secret_id
        version    = local.secrets[secret_environment_variables.key].version
      }
    }
  }

  # An instance starts only if its account can already read its secrets and reach its dependencies.
  depends_on = [
    google_project_service.api,
    google_secret_manager_secret_iam_member.function_accessor,
    google_project_iam_member.function_cloudsql_client,
    google_project_iam_member.function_firestore_user,
    google_project_iam_member.build,
    google_compute_router_nat.egress, # with the option on, the connector leads nowhere until the NAT exists
  ]
}

# AUTH_PUBLIC_URL and the redirect URI registered in Bling are computed before the auth function exists; after apply,
# warn if Cloud Functions reports another address for it.
check "auth_public_url_matches_the_deployed_function" {
  assert {
    condition     = google_cloudfunctions2_function.function["auth"].url == local.auth_public_url
    error_message = "The auth function's URL (${google_cloudfunctions2_function.function["auth"].url}) differs from AUTH_PUBLIC_URL (${local.auth_public_url}): the Bling redirect URI and the re-authorization messages would point to the wrong address."
  }
}
