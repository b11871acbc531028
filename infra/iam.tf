# One runtime service account per function, holding only what that function does; one invoker account that Pub/Sub
# push uses to call the workers; one account that builds the function images.

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Bling ETL function ${each.key}"
  description  = "Runtime identity of the ${var.name_prefix}-${each.key} Cloud Function."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-push-invoker"
  display_name = "Bling ETL Pub/Sub push invoker"
  description  = "Signs the OIDC token of the push subscriptions; the only principal allowed to invoke the worker functions."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-function-build"
  display_name = "Bling ETL function builder"
  description  = "Cloud Build identity that turns the source bundles into function images."

  depends_on = [google_project_service.api]
}

locals {
  # (function, secret) pairs, keyed "function/secret".
  function_secret_pairs = merge([
    for name, secrets in local.function_secrets : {
      for secret in secrets : "${name}/${secret}" => { function = name, secret = secret }
    }
  ]...)

  # (function, topic) pairs, keyed "function/topic".
  function_publish_pairs = merge([
    for name, f in local.functions : {
      for topic in f.publishes_to : "${name}/${topic}" => { function = name, topic = topic }
    }
  ]...)
}

# --- runtime permissions -------------------------------------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "function_accessor" {
  for_each = local.function_secret_pairs

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_publish_pairs

  project = var.project_id
  topic   = google_pubsub_topic.topic[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function[each.value.function].member
}

resource "google_project_iam_member" "function_cloudsql_client" {
  for_each = { for name, f in local.functions : name => f if f.uses_db }

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.function[each.key].member
}

# Firestore has no per-collection IAM; datastore.user is the narrowest role that reads and writes documents.
resource "google_project_iam_member" "function_firestore_user" {
  for_each = { for name, f in local.functions : name => f if f.uses_firestore }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

# --- invocation ----------------------------------------------------------------------------------------------------

# A gen2 function is served by the Cloud Run service of the same name; run.invoker on it is what an OIDC-authenticated
# push needs.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.worker_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# The OAuth callback must be reachable by the user's browser and by Bling's redirect: the one public function.
resource "google_cloud_run_v2_service_iam_member" "auth_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["auth"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Pub/Sub mints the push OIDC tokens as the invoker account. Projects created before 2021-04-08 need this grant
# explicitly; on newer ones it is harmless.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- build ---------------------------------------------------------------------------------------------------------

# Cloud Run Builder: the predefined role for an account that builds Cloud Run functions (read the staged source,
# write the build logs and the image), narrower than roles/cloudbuild.builds.builder.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/run.builder",
  ])

  project = var.project_id
  role    = each.key
  member  = google_service_account.build.member
}

# --- deployer ------------------------------------------------------------------------------------------------------

# The identity cloudbuild.yaml runs as (its serviceAccount field). Since mid-2024 a new project's builds run as the
# Compute Engine default account, which may hold no role at all; this account holds exactly what the build does:
# write its logs, read the operator's configuration and the Terraform state, run the migrations through the
# connector with the DB passwords, and create or change everything in infra/. docs/RUNBOOK.md lists the same grants.
resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-deployer"
  display_name = "Bling ETL deployer (Cloud Build)"
  description  = "Runs cloudbuild.yaml: tests, bundles, migrations, terraform apply."

  depends_on = [google_project_service.api]
}

locals {
  deployer_roles = toset([
    "roles/logging.logWriter",               # the build's own log (options.logging: CLOUD_LOGGING_ONLY)
    "roles/cloudsql.client",                 # migrations through the Cloud SQL connector
    "roles/cloudsql.admin",                  # google_sql_database_instance, _database, _user
    "roles/cloudfunctions.admin",            # google_cloudfunctions2_function
    "roles/run.admin",                       # invoker bindings on the functions' Cloud Run services
    "roles/iam.serviceAccountAdmin",         # the runtime, invoker and build accounts and their IAM
    "roles/resourcemanager.projectIamAdmin", # google_project_iam_member (and reading the project)
    "roles/pubsub.admin",                    # topics, subscriptions and their IAM
    "roles/secretmanager.admin",             # secret containers, their IAM, reading the DB passwords
    "roles/datastore.owner",                 # the Firestore database and its TTL fields
    "roles/cloudscheduler.admin",            # the bling-daily job
    "roles/storage.admin",                   # the source bucket, the state bucket's objects, the tfvars object
    "roles/monitoring.editor",               # alert policies, notification channel, dashboard
    "roles/logging.configWriter",            # log-based metrics
    "roles/serviceusage.serviceUsageAdmin",  # google_project_service
  ])
}

resource "google_project_iam_member" "deployer" {
  #checkov:skip=CKV_GCP_49:The deployer creates and changes the stack's own service accounts and their IAM (this file); creating an account is a project-level permission, and this is the one identity that deploys the project.
  for_each = local.deployer_roles

  project = var.project_id
  role    = each.key
  member  = google_service_account.deployer.member
}

# Deploying a function acts as its runtime account and as the build account: actAs on those accounts only, not on
# every account of the project.
resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = merge(
    { for name, sa in google_service_account.function : "function-${name}" => sa.name },
    { build = google_service_account.build.name },
  )

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}
