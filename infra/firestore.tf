# Firestore holds the short-lived coordination state: OAuth tokens and state parameters, the shared rate-budget ticks
# and the per-message dedupe markers. Documents that expire carry an `expire_at` timestamp; TTL deletes them.
# The collections and which of them expire are declared in shared/topology.py (COLLECTIONS); tests/integration/infra checks
# that the list below is exactly the ones with a TTL there.

resource "google_firestore_database" "main" {
  project     = var.project_id
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  concurrency_mode            = "PESSIMISTIC"
  app_engine_integration_mode = "DISABLED"
  # The OAuth refresh token lives here: losing the database means a manual re-authorization.
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.api]
}

locals {
  firestore_ttl_collections = toset([
    "${var.firestore_prefix}_oauth_states",
    "${var.firestore_prefix}_oauth_codes",
    "${var.firestore_prefix}_rate_ticks",
    "${var.firestore_prefix}_rate_state",
    "${var.firestore_prefix}_checkpoints",
    "${var.firestore_prefix}_enrich_claims",
  ])
}

resource "google_firestore_field" "expire_at_ttl" {
  for_each = local.firestore_ttl_collections

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.key
  field      = "expire_at"

  ttl_config {}

  # A monotonically growing timestamp is a poor index (hotspots) and nothing queries it: no single-field index.
  index_config {}
}
