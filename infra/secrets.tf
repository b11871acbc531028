# Only the secret containers are managed here. Their values are added out of band, so they never enter the
# Terraform state:
#   printf '%s' "$VALUE" | gcloud secrets versions add bling-client-id --data-file=-
# (docs/RUNBOOK.md, "Secrets"). Functions read them as environment variables at instance start, at the version
# var.secret_versions names.
locals {
  secrets = {
    "bling-client-id"     = { env = "BLING_CLIENT_ID", version = var.secret_versions.bling_client_id }
    "bling-client-secret" = { env = "BLING_CLIENT_SECRET", version = var.secret_versions.bling_client_secret }
    "bling-db-password"   = { env = "DB_PASSWORD", version = var.secret_versions.db_password }
  }

  # Which secrets each function reads: the Bling app credentials for the functions that call Bling, the DB password
  # for the ones that connect to Cloud SQL.
  function_secrets = {
    for name, f in local.functions : name => concat(
      f.uses_bling ? ["bling-client-id", "bling-client-secret"] : [],
      f.uses_db ? ["bling-db-password"] : [],
    )
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.key

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.api]
}
