# Function source bundles. `python infra/build_bundles.py` writes build/bundles/<function>.zip deterministically
# (fixed timestamps, sorted entries); the object is named after the zip's sha256, so a code change creates a new
# object, which changes the function's source and redeploys it, and an unchanged bundle redeploys nothing.

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Access logs of a bucket read only by Cloud Functions deploys add cost and no signal; Cloud Audit Logs record admin access.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # It holds only build artefacts (rebuilt from git by infra/build_bundles.py), and a versioned bucket keeps
  # noncurrent versions: without force_destroy `terraform destroy` stops at "bucket not empty".
  force_destroy = true

  versioning {
    enabled = true
  }

  # Superseded versions of an object are kept a month for inspection, then deleted.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

locals {
  bundle_dir = "${path.module}/../build/bundles"
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions

  bucket = google_storage_bucket.source.name
  name   = "${each.key}/${filesha256("${local.bundle_dir}/${each.key}.zip")}.zip"
  source = "${local.bundle_dir}/${each.key}.zip"
}
