terraform {
  # 1.11: write-only arguments (google_sql_user.password_wo) and ephemeral resources (the DB passwords are read from
  # Secret Manager at apply time and never stored in the state): docs/decisions/006-deploy-passwords-and-configuration.md.
  required_version = ">= 1.11"

  # Exact versions: infra/check_offline.sh checks every block against these versions' published schemas
  # (infra/provider_schema.py), and .terraform.lock.hcl holds their package hashes.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    # time_sleep: Cloud Monitoring does not see a new log-based metric at once (monitoring.tf).
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
  }

  # State lives in a GCS bucket created once by hand (see docs/RUNBOOK.md); the bucket and prefix are given at
  # `terraform init -backend-config=bucket=... -backend-config=prefix=...` so this file names no project.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app        = "bling-etl"
    managed-by = "terraform"
  }
}
