# Only the secret containers are managed here. Their values are added out of band, so they never enter the
# Terraform state:
#   printf '%s' "$VALUE" | gcloud secrets versions add bling-client-id --data-file=-
# (docs/RUNBOOK.md, "First deployment"). Functions read them as environment variables at instance start, at the
# version var.secret_versions names. The DB passwords are also read by Terraform (ephemeral, cloudsql.tf) and by the
# Cloud Build migrations step.
locals {
  secrets = {
    "bling-client-id"     = { env = "BLING_CLIENT_ID", version = var.secret_versions.bling_client_id }
    "bling-client-secret" = { env = "BLING_CLIENT_SECRET", version = var.secret_versions.bling_client_secret }
    "bling-db-password"   = { env = "DB_PASSWORD", version = var.secret_versions.db_password }
    # AES-256 key (urlsafe base64 of 32 bytes) that encrypts the OAuth tokens stored in Firestore.
    "bling-token-key" = { env = "BLING_TOKEN_KEY", version = var.secret_versions.token_key }
    # The operator's key for the auth function's /start and /status (Authorization: Bearer ...).
    "bling-auth-admin-key" = { env = "AUTH_ADMIN_KEY", version = var.secret_versions.auth_admin_key }
  }

  # Secrets no function reads: the read-only BI role's password, set by the migrations step (infra/bi_role.py).
  deploy_only_secrets = toset(["bling-bi-password"])

  # Which secrets each function reads: the Bling app credentials and the token key for the functions that call
  # Bling, the operator key for auth, the DB password for the ones that connect to Cloud SQL.
  function_secrets = {
    for name, f in local.functions : name => concat(
      f.uses_bling ? ["bling-client-id", "bling-client-secret", "bling-token-key"] : [],
      name == "auth" ? ["bling-auth-admin-key"] : [],
      f.uses_db ? ["bling-db-password"] : [],
    )
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = setunion(keys(local.secrets), local.deploy_only_secrets)

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
