variable "project_id" {
  description = "The Google Cloud project that hosts the pipeline."
  type        = string
}

variable "region" {
  description = "Region of the functions, Cloud SQL, the scheduler job and the source bucket."
  type        = string
  default     = "southamerica-east1"
}

variable "firestore_location" {
  description = "Location of the (default) Firestore database; a region such as southamerica-east1 or a multi-region such as nam5. Cannot change after creation."
  type        = string
  default     = "southamerica-east1"
}

variable "name_prefix" {
  description = "Prefix of the function, service account, Cloud SQL instance and bucket names. Topic and subscription names are fixed by shared/topology.py and do not take it."
  type        = string
  default     = "bling"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 characters of lowercase letters, digits and hyphens, starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "firestore_prefix" {
  description = "Prefix of the Firestore collection names (env FIRESTORE_PREFIX); the TTL policies are set on <prefix>_oauth_states, <prefix>_oauth_codes, <prefix>_rate_ticks and <prefix>_enrich_claims."
  type        = string
  default     = "bling"
}

variable "function_memory" {
  description = "Memory of every function instance, in Cloud Run notation (256M, 512M, 1G)."
  type        = string
  default     = "512M"
}

variable "function_max_instances" {
  description = <<-EOT
    Maximum instances per function. Every instance runs one request at a time and holds at most one Cloud SQL
    connection, so the sum over the DB-using functions (scheduler, lister, detail, enrich) must stay well below the
    instance's max_connections (25 on db-f1-micro): see the arithmetic in functions.tf before raising these.
  EOT
  type = object({
    scheduler = optional(number, 1)
    lister    = optional(number, 4)
    detail    = optional(number, 5)
    enrich    = optional(number, 4)
    auth      = optional(number, 2)
  })
  default = {}
}

variable "worker_ingress" {
  description = "Ingress of the Pub/Sub-pushed functions. ALLOW_INTERNAL_ONLY admits Pub/Sub push from the same project and nothing from the internet; every request also needs roles/run.invoker, which only the push invoker service account has."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB", "ALLOW_ALL"], var.worker_ingress)
    error_message = "worker_ingress must be ALLOW_INTERNAL_ONLY, ALLOW_INTERNAL_AND_GCLB or ALLOW_ALL."
  }
}

variable "bling_rate_budget_per_s" {
  description = "Requests per second to the Bling API shared by every instance of every function (env BLING_RATE_BUDGET_PER_S). Bling allows 3 per second per account, including other integrations of the same account."
  type        = number
  default     = 2.8

  validation {
    condition     = var.bling_rate_budget_per_s > 0 && var.bling_rate_budget_per_s <= 3
    error_message = "bling_rate_budget_per_s must be in (0, 3]: Bling blocks the account above 3 requests per second."
  }
}

variable "timezone" {
  description = "Time zone of the daily schedule and of the date windows (env ETL_TIMEZONE)."
  type        = string
  default     = "America/Sao_Paulo"
}

variable "daily_schedule" {
  description = "Cron expression of the bling-daily Cloud Scheduler job, in var.timezone."
  type        = string
  default     = "0 6 * * *"
}

variable "secret_versions" {
  description = <<-EOT
    Secret Manager version each function reads at instance start. "latest" picks up a rotated value on the next
    cold start; pin a number (for example "3") to make a rotation an explicit `terraform apply`.
  EOT
  type = object({
    bling_client_id     = optional(string, "latest")
    bling_client_secret = optional(string, "latest")
    db_password         = optional(string, "latest")
    token_key           = optional(string, "latest")
    auth_admin_key      = optional(string, "latest")
  })
  default = {}
}

variable "db_password_rotation" {
  description = "Generation of the bling_etl password. Terraform sends the bling-db-password secret to Cloud SQL only when this number changes (a write-only argument): after adding a new secret version, raise it by one and apply."
  type        = number
  default     = 1
}

variable "db_tier" {
  description = "Machine tier of the Cloud SQL instance. db-f1-micro has max_connections 25; see functions.tf before changing instance counts."
  type        = string
  default     = "db-f1-micro"
}

variable "db_disk_size_gb" {
  description = "Initial disk size of the Cloud SQL instance in GB (it grows automatically)."
  type        = number
  default     = 10
}

variable "db_deletion_protection" {
  description = "Refuse to delete the Cloud SQL instance (Terraform and API). Set to false only to tear the pipeline down."
  type        = bool
  default     = true
}

variable "db_backup_start_time" {
  description = "Start of the daily Cloud SQL backup window, HH:MM in UTC."
  type        = string
  default     = "05:00"
}

variable "missed_run_alert_utc_hour" {
  description = "Hour of the day (UTC, 0-23) by which the daily run must have completed; if no run_completed log line of kind daily was written in the missed_run_lookback_hours before it, the \"daily run missed\" alert fires. Default 12 = 09:00 in São Paulo, three hours after the 06:00 schedule."
  type        = number
  default     = 12

  validation {
    condition     = var.missed_run_alert_utc_hour >= 0 && var.missed_run_alert_utc_hour <= 23 && floor(var.missed_run_alert_utc_hour) == var.missed_run_alert_utc_hour
    error_message = "missed_run_alert_utc_hour must be a whole hour from 0 to 23."
  }
}

variable "missed_run_lookback_hours" {
  description = "How far before missed_run_alert_utc_hour a completed daily run counts. It must reach back past today's scheduled start and stay short of yesterday's run: default 6 (from 06:00 UTC, the run starts at 09:00 UTC)."
  type        = number
  default     = 6

  validation {
    condition     = var.missed_run_lookback_hours >= 1 && var.missed_run_lookback_hours <= 20
    error_message = "missed_run_lookback_hours must be between 1 and 20."
  }
}

variable "alert_email" {
  description = "Email address that receives the alerts (function errors, dead letters, missed daily run). Empty: the alert policies exist but notify nobody."
  type        = string
  default     = ""
}

variable "static_egress_ip" {
  description = "Send every function's outbound traffic through one reserved IP (Serverless VPC Access connector + Cloud NAT, infra/network.tf) and turn on the fleet-wide cap under Bling's per-IP limits (BLING_FLEET_RATE_PER_S, BLING_FLEET_ERRORS_PER_10S). Costs about US$ 20-30 a month, always on: docs/RUNBOOK.md, \"One egress IP for all accounts (Cloud NAT)\"."
  type        = bool
  default     = false
}

variable "bling_fleet_rate_per_s" {
  description = "With static_egress_ip: requests per second to Bling shared by every account of the deployment (env BLING_FLEET_RATE_PER_S). Bling blocks an IP at 600 requests in 10 s (60/s); 40 leaves room for retries and for the token calls."
  type        = number
  default     = 40

  validation {
    condition     = var.bling_fleet_rate_per_s > 0 && var.bling_fleet_rate_per_s <= 60
    error_message = "bling_fleet_rate_per_s must be in (0, 60]: Bling blocks the IP above 600 requests in 10 seconds."
  }
}

variable "bling_fleet_errors_per_10s" {
  description = "With static_egress_ip: error responses from Bling in any 10 s, over every account, after which the fleet pauses (env BLING_FLEET_ERRORS_PER_10S). Bling blocks an IP at 300 errors in 10 s."
  type        = number
  default     = 250

  validation {
    condition     = var.bling_fleet_errors_per_10s > 0 && var.bling_fleet_errors_per_10s < 300
    error_message = "bling_fleet_errors_per_10s must be in (0, 300): Bling blocks the IP at 300 errors in 10 seconds."
  }
}

variable "egress_subnet_cidr" {
  description = "With static_egress_ip: the /28 of the connector's subnet in the egress network. Change it only if it overlaps a network you peer with."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrnetmask(var.egress_subnet_cidr)) && endswith(var.egress_subnet_cidr, "/28")
    error_message = "egress_subnet_cidr must be an IPv4 /28 (a Serverless VPC Access connector needs exactly that)."
  }
}

variable "egress_connector_machine_type" {
  description = "With static_egress_ip: machine type of the connector's instances (2 always on, 3 at most). e2-micro carries the fleet cap's ~60 small requests/s; Google advises larger types for high packet rates."
  type        = string
  default     = "e2-micro"

  validation {
    condition     = contains(["f1-micro", "e2-micro", "e2-standard-4"], var.egress_connector_machine_type)
    error_message = "egress_connector_machine_type must be f1-micro, e2-micro or e2-standard-4 (the types a connector accepts)."
  }
}
