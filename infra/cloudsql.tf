# PostgreSQL 15 for the loaded data. Functions reach it through the Cloud SQL Python Connector (env
# CLOUD_SQL_INSTANCE = connection name), which authenticates with the function's IAM identity (roles/cloudsql.client)
# and encrypts with its own TLS, so the instance has a public IP with no authorized networks: nothing can connect
# without going through the Cloud SQL Admin API.
resource "google_sql_database_instance" "main" {
  #checkov:skip=CKV_GCP_60:No VPC in this project; the connector admits only IAM-authorized clients and no network is authorized. Private IP would add a VPC and a Serverless VPC Access connector (always-on cost) for no gain here.
  #checkov:skip=CKV_GCP_79:POSTGRES_15 is the version the project targets (brief and migrations); upgrade deliberately.
  #checkov:skip=CKV_GCP_110:pgAudit needs an extension and a flag reboot for no reader: the only client is the ETL account, and the functions log every write.
  name                = "${var.name_prefix}-pg"
  project             = var.project_id
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.db_deletion_protection

  settings {
    tier              = var.db_tier
    edition           = "ENTERPRISE" # shared-core tiers such as db-f1-micro exist only in the Enterprise edition
    availability_type = "ZONAL"
    disk_type         = "PD_SSD"
    disk_size         = var.db_disk_size_gb
    disk_autoresize   = true

    deletion_protection_enabled = var.db_deletion_protection

    backup_configuration {
      enabled                        = true
      start_time                     = var.db_backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled = true
      # The connector always presents a client certificate issued by the Admin API; nothing else may connect.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 9 # UTC, 06:00 in São Paulo, before the daily run
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    # Durations of statements and the text of DDL only (schema changes come from migrations): a few lines per NF-e.
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_sql_database" "main" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = "bling"
}

# The ETL user's password is the bling-db-password secret, added out of band (docs/RUNBOOK.md, "First deployment").
# Terraform reads it at apply time through an ephemeral resource and hands it to the Cloud SQL API as a write-only
# argument: it is in neither the plan nor the state (docs/decisions/006-deploy-passwords-and-configuration.md).
# Cloud SQL for PostgreSQL refuses a BUILT_IN user without a password (Error 400: Missing user password).
ephemeral "google_secret_manager_secret_version" "db_password" {
  project = var.project_id
  secret  = google_secret_manager_secret.secret["bling-db-password"].secret_id
  version = var.secret_versions.db_password
}

resource "google_sql_user" "etl" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = "bling_etl"
  type     = "BUILT_IN"

  password_wo = ephemeral.google_secret_manager_secret_version.db_password.secret_data
  # Write-only values are sent only when this number changes: bump it after adding a new secret version.
  password_wo_version = var.db_password_rotation

  # The user owns the tables, and PostgreSQL refuses to drop a role that owns objects: on destroy Terraform forgets
  # the user, and deleting the instance removes it with everything else.
  deletion_policy = "ABANDON"
}
