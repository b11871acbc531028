terraform {
  # 1.5: `check` blocks and `import` blocks are available; nothing here needs a newer CLI.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8"
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
