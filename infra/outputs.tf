output "auth_url" {
  description = "Public URL of the auth function (also given to every function as AUTH_PUBLIC_URL)."
  value       = local.auth_public_url
}

output "auth_callback_url" {
  description = "Redirect URI to register in the Bling app (developer.bling.com.br, \"Cadastro de aplicativos\")."
  value       = "${local.auth_public_url}/callback"
}

output "auth_start_url" {
  description = "Open in a browser to authorize the pipeline in Bling (first time, and whenever re-authorization is required)."
  value       = "${local.auth_public_url}/start"
}

output "auth_status_url" {
  description = "Shows whether the pipeline holds a valid Bling authorization."
  value       = "${local.auth_public_url}/status"
}

output "function_names" {
  description = "Deployed function name per folder under functions/."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.name }
}

output "function_uris" {
  description = "Cloud Run URL of each function (the push endpoint of the workers)."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri }
}

output "function_service_accounts" {
  description = "Runtime service account email per function."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "topics" {
  description = "Pub/Sub topic per route (shared.topology.ROUTES)."
  value       = { for name, t in google_pubsub_topic.topic : name => t.name }
}

output "dead_letter_topics" {
  description = "Dead-letter topic per route topic."
  value       = { for name, t in google_pubsub_topic.dead_letter : name => t.name }
}

output "dead_letter_subscriptions" {
  description = "Pull subscription holding each route's dead letters, read by `python -m shared.ops.replay_dead_letters`."
  value       = { for name, s in google_pubsub_subscription.dead_letter_hold : name => s.name }
}

output "db_instance_name" {
  description = "Cloud SQL instance name (for `gcloud sql users set-password --instance`)."
  value       = google_sql_database_instance.main.name
}

output "db_connection_name" {
  description = "Cloud SQL connection name, the CLOUD_SQL_INSTANCE of the functions and of the migrations step."
  value       = google_sql_database_instance.main.connection_name
}

output "db_name" {
  description = "PostgreSQL database name (DB_NAME)."
  value       = google_sql_database.main.name
}

output "db_user" {
  description = "PostgreSQL user of the ETL (DB_USER); its password is the bling-db-password secret."
  value       = google_sql_user.etl.name
}

output "source_bucket" {
  description = "Bucket holding the function source bundles."
  value       = google_storage_bucket.source.name
}

output "scheduler_job" {
  description = "Cloud Scheduler job that starts the daily import."
  value       = google_cloud_scheduler_job.job.name
}

output "secret_ids" {
  description = "Secret Manager secrets whose values must be added out of band with `gcloud secrets versions add`."
  value       = [for s in google_secret_manager_secret.secret : s.secret_id]
}

output "egress_ip" {
  description = "With static_egress_ip: the one address every function reaches Bling from (give it to the client if their network allow-lists). null without."
  value       = var.static_egress_ip ? google_compute_address.egress[0].address : null
}
