# For every route: the topic, its dead-letter topic, a push subscription to the worker function (retry policy,
# dead-letter policy, OIDC token) and a pull subscription that holds the dead letters until they are replayed with
# `python -m shared.ops.replay_dead_letters`. Why push subscriptions of our own instead of Eventarc triggers:
# docs/decisions/002-push-subscriptions-with-dead-letters.md.

locals {
  seven_days = "604800s"
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is enough for invoice ids and date windows; a CMEK key would add KMS cost and a key to rotate.
  for_each = local.routes

  project = var.project_id
  name    = each.key

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is enough for invoice ids and date windows; a CMEK key would add KMS cost and a key to rotate.
  for_each = local.routes

  project = var.project_id
  name    = "${each.key}-dead-letter"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.routes

  project = var.project_id
  name    = "${each.key}-push"
  topic   = google_pubsub_topic.topic[each.key].id

  # Also the push request timeout: equal to the function timeout, so a message is not redelivered while its first
  # run is still going.
  ack_deadline_seconds       = each.value.ack_deadline_s
  message_retention_duration = local.seven_days

  # A message of an account carries the account as its ordering key while two or more accounts are active, so
  # push delivers one message of each account at a time and the accounts run side by side
  # (docs/decisions/014-one-ordering-key-per-account.md). Immutable: turning it on replaces the subscription, and
  # its backlog with it; the RUNBOOK's upgrade drains the subscriptions first.
  enable_message_ordering = each.value.message_ordering

  retry_policy {
    minimum_backoff = "${each.value.minimum_backoff_s}s"
    maximum_backoff = "${each.value.maximum_backoff_s}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  push_config {
    # The Cloud Run URL of the gen2 function; the OIDC token's audience defaults to it.
    push_endpoint = google_cloudfunctions2_function.function[each.value.function].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker.email
    }
  }

  # Never delete the subscription for inactivity (the default is 31 days): a quiet month must not break the pipeline.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}

resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = local.routes

  project = var.project_id
  name    = "${each.key}-dead-letter-hold"
  topic   = google_pubsub_topic.dead_letter[each.key].id

  ack_deadline_seconds       = 60
  message_retention_duration = local.seven_days

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent forwards undeliverable messages: it publishes to the dead-letter topic and acknowledges
# them on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.routes

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.routes

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
