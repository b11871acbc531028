# eventarc.googleapis.com is deliberately absent: the workers have no event_trigger, Pub/Sub pushes to them through
# subscriptions declared in pubsub.tf (docs/decisions/002-push-subscriptions-with-dead-letters.md).
# cloudresourcemanager and serviceusage must already be on before the first plan (data.google_project and this
# resource call them): docs/RUNBOOK.md, "Prerequisites", enables them with gcloud. They are listed here as well so
# that a destroy or a later change never switches them off underneath the stack.
locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "api" {
  for_each = local.apis

  project = var.project_id
  service = each.key

  # Other workloads of the project may use the same APIs: destroying this stack must not switch them off.
  disable_on_destroy         = false
  disable_dependent_services = false
}
