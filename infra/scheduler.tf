# Once a day, ask the scheduler function for the default daily window (the last DAILY_LOOKBACK_DAYS days). Cloud
# Scheduler publishes with its own service agent, so no service account is needed here.

locals {
  # Parsed by shared.schedule.parse_schedule_request (tests/integration/infra checks that it accepts this body).
  daily_message = "{\"daily\": true}"
}

resource "google_cloud_scheduler_job" "job" {
  project     = var.project_id
  region      = var.region
  name        = "bling-daily"
  description = "Daily Bling NF-e import: publishes {\"daily\": true} to bling-schedule."
  schedule    = var.daily_schedule
  time_zone   = var.timezone

  pubsub_target {
    topic_name = google_pubsub_topic.topic["bling-schedule"].id
    data       = base64encode(local.daily_message)
  }

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
  }

  depends_on = [google_project_service.api]
}
