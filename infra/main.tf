# What is deployed, as data. The names and delivery settings mirror shared/topology.py (ROUTES, HTTP_FUNCTIONS):
# tests/integration/infra/test_terraform_matches_code.py fails when the two disagree.

data "google_project" "project" {
  project_id = var.project_id
}

locals {
  # One entry per Pub/Sub topic that drives a worker function (shared.topology.ROUTES).
  routes = {
    "bling-schedule" = {
      function              = "scheduler"
      message_ordering      = false
      max_delivery_attempts = 5
      minimum_backoff_s     = 10
      maximum_backoff_s     = 600
      ack_deadline_s        = 540
    }
    "bling-windows" = {
      function              = "lister"
      message_ordering      = true
      max_delivery_attempts = 5
      minimum_backoff_s     = 10
      maximum_backoff_s     = 600
      ack_deadline_s        = 540
    }
    "bling-nfe" = {
      function              = "detail"
      message_ordering      = true
      max_delivery_attempts = 5
      minimum_backoff_s     = 10
      maximum_backoff_s     = 600
      ack_deadline_s        = 540
    }
    "bling-enrich" = {
      function              = "enrich"
      message_ordering      = true
      max_delivery_attempts = 5
      minimum_backoff_s     = 10
      maximum_backoff_s     = 600
      ack_deadline_s        = 540
    }
  }

  # One entry per folder under functions/ (shared.topology.ALL_FUNCTIONS).
  #   timeout_s:    Pub/Sub-pushed workers get 540 s, the event-driven maximum, equal to the push ack deadline, so
  #                 Pub/Sub never redelivers a message whose first run is still going. auth answers a browser: 60 s.
  #   publishes_to: topics the function publishes follow-up messages to (roles/pubsub.publisher on each). The
  #                 scheduler (daily run) and auth (after a new authorization) also re-publish parked messages
  #                 (shared/parking.py) to the worker topics they came from.
  #   uses_db:      connects to Cloud SQL (cloudsql.client, DB_* env, DB password secret).
  #   uses_bling:   calls the Bling API (client id/secret secrets, rate budget, AUTH_PUBLIC_URL for re-auth errors).
  #   uses_firestore: OAuth tokens, rate ticks, checkpoints, parked messages (roles/datastore.user).
  #   public:       reachable by anyone (allUsers invoker). Only the OAuth callback.
  functions = {
    scheduler = {
      entry_point    = "on_schedule"
      description    = "Turns a bling-schedule message (daily / month / range) into date windows on bling-windows."
      timeout_s      = 540
      max_instances  = var.function_max_instances.scheduler
      publishes_to   = ["bling-windows", "bling-nfe", "bling-enrich"]
      uses_db        = true
      uses_bling     = false
      uses_firestore = true
      public         = false
    }
    lister = {
      entry_point    = "on_window"
      description    = "Lists the NF-e of one date window in Bling and publishes their ids to bling-nfe."
      timeout_s      = 540
      max_instances  = var.function_max_instances.lister
      publishes_to   = ["bling-nfe"]
      uses_db        = true
      uses_bling     = true
      uses_firestore = true
      public         = false
    }
    detail = {
      entry_point    = "on_nfe_batch"
      description    = "Fetches each NF-e of a batch from Bling, stores it in Cloud SQL, asks bling-enrich for its contacts and products."
      timeout_s      = 540
      max_instances  = var.function_max_instances.detail
      publishes_to   = ["bling-enrich"]
      uses_db        = true
      uses_bling     = true
      uses_firestore = true
      public         = false
    }
    enrich = {
      entry_point    = "on_enrich"
      description    = "Fetches the contacts and products an NF-e refers to and stores them in Cloud SQL."
      timeout_s      = 540
      max_instances  = var.function_max_instances.enrich
      publishes_to   = []
      uses_db        = true
      uses_bling     = true
      uses_firestore = true
      public         = false
    }
    auth = {
      entry_point    = "auth_http"
      description    = "Bling OAuth: /start sends the user to Bling, /callback stores the tokens, /status shows them."
      timeout_s      = 60
      max_instances  = var.function_max_instances.auth
      publishes_to   = ["bling-windows", "bling-nfe", "bling-enrich"]
      uses_db        = false
      uses_bling     = true
      uses_firestore = true
      public         = true
    }
  }

  worker_functions = { for name, f in local.functions : name => f if !f.public }

  # The gen2 function's cloudfunctions.net address is known before the function exists, so every function (auth
  # included, for its redirect URI) can be told it without a dependency cycle.
  auth_public_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}-auth"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
