# Alerts on what needs a human (function ERROR lines, dead letters, a missed daily run) and a dashboard of the daily
# work.
# Gen2 functions log as the Cloud Run service of the same name: resource.type="cloud_run_revision".

locals {
  function_services = [for name in keys(local.functions) : "${var.name_prefix}-${name}"]
  functions_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for s in local.function_services : "\"${s}\""])})",
  ])

  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]
}

resource "google_monitoring_notification_channel" "email" {
  for_each = var.alert_email == "" ? toset([]) : toset([var.alert_email])

  project      = var.project_id
  display_name = "Bling ETL alerts (${each.key})"
  type         = "email"

  labels = {
    email_address = each.key
  }

  depends_on = [google_project_service.api]
}

# --- log-based metrics ---------------------------------------------------------------------------------------------

resource "google_logging_metric" "function_errors" {
  project     = var.project_id
  name        = "bling/function_errors"
  description = "Log entries with severity ERROR or above from the Bling ETL functions."
  filter      = "${local.functions_log_filter} AND severity>=ERROR"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Function (Cloud Run service) that logged the error."
    }
  }

  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.api]
}

# The detail function logs event="nfe_stored" once per NF-e written to Cloud SQL.
resource "google_logging_metric" "nfe_stored" {
  project     = var.project_id
  name        = "bling/nfe_stored"
  description = "NF-e stored in Cloud SQL by the detail function."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-detail\" AND jsonPayload.event=\"nfe_stored\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.api]
}

# Every request to the Bling API is logged with event="bling_request".
resource "google_logging_metric" "bling_requests" {
  project     = var.project_id
  name        = "bling/api_requests"
  description = "Requests made to the Bling API, by function."
  filter      = "${local.functions_log_filter} AND jsonPayload.event=\"bling_request\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Function (Cloud Run service) that made the request."
    }
  }

  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.api]
}

# The data path logs event="run_completed" (fields run_id, kind) once per run, when all its windows are listed.
resource "google_logging_metric" "runs_completed" {
  project     = var.project_id
  name        = "bling/runs_completed"
  description = "Runs of the Bling ETL whose windows were all listed, by kind (daily, month, range)."
  filter      = "${local.functions_log_filter} AND jsonPayload.event=\"run_completed\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "kind"
      value_type  = "STRING"
      description = "Kind of run: daily, month or range."
    }
  }

  label_extractors = {
    kind = "EXTRACT(jsonPayload.kind)"
  }

  depends_on = [google_project_service.api]
}

# A policy on a log-based metric created in the same apply fails with 404 "Cannot find metric(s)" until Cloud
# Monitoring has seen the new metric (hashicorp/terraform-provider-google#11102): the policies wait for this, which
# is replaced (and waits again) whenever a metric is.
resource "time_sleep" "log_metrics_visible" {
  create_duration = "90s"

  triggers = {
    function_errors = google_logging_metric.function_errors.id
    runs_completed  = google_logging_metric.runs_completed.id
  }
}

# --- alerts --------------------------------------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "function_errors" {
  project      = var.project_id
  display_name = "Bling ETL: function errors"
  combiner     = "OR"

  conditions {
    display_name = "ERROR log entries from a Bling ETL function"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.function_errors.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service"]
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A Bling ETL function logged an ERROR. Read the entries (docs/RUNBOOK.md, "Troubleshooting"):

          gcloud logging read 'resource.type="cloud_run_revision" AND resource.labels.service_name="$${metric.label.service}" AND severity>=ERROR' --freshness=1h --limit=50

      "re-authorization required" means the Bling refresh token is gone: open the auth start URL again.
    EOT
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = local.notification_channels

  depends_on = [time_sleep.log_metrics_visible]
}

# The daily run did not complete by var.missed_run_alert_utc_hour: the scheduler job is paused or failing, the
# scheduler or lister keeps failing, or Bling refused the authorization. Without this policy all of those are
# silent. A metric-absence condition cannot express it (its longest absence is 23.5 h, shorter than a day between
# runs), so it is PromQL: during that UTC hour, fire if no daily run completed in the lookback before it.
resource "google_monitoring_alert_policy" "daily_run_missed" {
  project      = var.project_id
  display_name = "Bling ETL: daily run missed"
  combiner     = "OR"

  conditions {
    display_name = "No daily run completed by ${var.missed_run_alert_utc_hour}:00 UTC"

    condition_prometheus_query_language {
      query    = "absent_over_time(logging_googleapis_com:user_bling_runs_completed{kind=\"daily\"}[${var.missed_run_lookback_hours}h]) and on() (hour() == ${var.missed_run_alert_utc_hour})"
      duration = "0s"
      # Before the first run_completed line the metric has no data; the policy must still be created (and fire).
      disable_metric_validation = true
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The daily Bling import did not complete today (docs/RUNBOOK.md, "The daily run did not complete"). Check in order:

          gcloud scheduler jobs describe bling-daily --location=${var.region} --format='value(state,status)'
          gcloud logging read 'jsonPayload.event="run_planned"' --freshness=1d --limit=5
          gcloud logging read 'resource.type="cloud_run_revision" AND severity>=ERROR' --freshness=1d --limit=50

      A PAUSED job: `gcloud scheduler jobs resume bling-daily --location=${var.region}`. "re-authorization required":
      open the auth start URL. Then run it by hand: `gcloud scheduler jobs run bling-daily --location=${var.region}`.
    EOT
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = local.notification_channels

  depends_on = [time_sleep.log_metrics_visible]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project      = var.project_id
  display_name = "Bling ETL: dead letters waiting"
  combiner     = "OR"

  conditions {
    display_name = "Messages in a -dead-letter-hold subscription"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=monitoring.regex.full_match(\".*-dead-letter-hold\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Messages failed every delivery attempt and were parked in a dead-letter hold subscription. Find why in the logs
      (severity>=ERROR around the time they failed), fix the cause, then replay them:

          python -m shared.ops.replay_dead_letters --topic bling-nfe

      (docs/RUNBOOK.md, "Replaying dead letters").
    EOT
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = local.notification_channels

  depends_on = [google_pubsub_subscription.dead_letter_hold]
}

# --- dashboard -----------------------------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "main" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "Bling ETL"
    mosaicLayout = {
      columns = 12
      tiles = [
        {
          xPos   = 0
          yPos   = 0
          width  = 6
          height = 4
          widget = {
            title = "NF-e stored per day"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.nfe_stored.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "86400s"
                      perSeriesAligner   = "ALIGN_SUM"
                      crossSeriesReducer = "REDUCE_SUM"
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos   = 6
          yPos   = 0
          width  = 6
          height = 4
          widget = {
            title = "Bling API requests (per 5 min, by function)"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.bling_requests.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_SUM"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = ["metric.label.service"]
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos   = 0
          yPos   = 4
          width  = 6
          height = 4
          widget = {
            title = "Errors (per 5 min, by function)"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.function_errors.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_SUM"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = ["metric.label.service"]
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos   = 6
          yPos   = 4
          width  = 6
          height = 4
          widget = {
            title = "Dead letters waiting (by subscription)"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=monitoring.regex.full_match(\".*-dead-letter-hold\")"
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_MAX"
                      crossSeriesReducer = "REDUCE_MAX"
                      groupByFields      = ["resource.label.subscription_id"]
                    }
                  }
                }
              }]
            }
          }
        },
      ]
    }
  })

  depends_on = [google_project_service.api]
}
