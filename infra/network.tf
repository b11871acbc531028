# One static egress IP for every function (var.static_egress_ip; docs/decisions/012-fleet-egress-and-ip-limits.md,
# docs/RUNBOOK.md "One egress IP for all accounts (Cloud NAT)"). Bling limits each source IP (600 requests or 300
# errors in 10 s, 20 token calls in 60 s) whatever the account; with one known IP the fleet-wide cap
# (BLING_FLEET_RATE_PER_S, functions.tf) keeps every account together under those limits, and the client can
# allow-list the address.
#
#   function --(vpc_connector, ALL_TRAFFIC)--> connector on its own /28 subnet --> Cloud Router + Cloud NAT
#            --> the reserved address --> Bling
#
# Cloud Functions gen2 in google 6.50.0 offers only the Serverless VPC Access connector (service_config has
# vpc_connector and vpc_connector_egress_settings, no Direct VPC egress). The connector is in this project, so the
# Cloud Functions and Cloud Run service agents already hold vpcaccess.connectors.use through their service agent
# roles: no grant is added for them. Everything here has count = 0 with the option off (the default): the
# connector's instances and the address bill by the hour.

locals {
  # The deployer creates these only with the option on; granted then, and only then (iam.tf keeps the rest).
  deployer_egress_roles = toset([
    "roles/compute.networkAdmin", # network, subnet, router, NAT, address
    "roles/vpcaccess.admin",      # the connector
  ])
  egress_apis = toset(["compute.googleapis.com", "vpcaccess.googleapis.com"])
}

resource "google_project_service" "egress_api" {
  for_each = var.static_egress_ip ? local.egress_apis : toset([])

  project = var.project_id
  service = each.key

  disable_on_destroy         = false
  disable_dependent_services = false
}

resource "google_project_iam_member" "deployer_egress" {
  for_each = var.static_egress_ip ? local.deployer_egress_roles : toset([])

  project = var.project_id
  role    = each.key
  member  = google_service_account.deployer.member
}

# A new grant takes up to a minute to be seen; the first apply with the option on (as the deployer) would otherwise
# fail on the network. Every resource of the path depends on this (and through it on the grants and the APIs), so
# turning the option off destroys the path before the roles go.
resource "time_sleep" "deployer_egress_roles" {
  count = var.static_egress_ip ? 1 : 0

  create_duration = "60s"

  triggers = {
    roles = join(",", sort([for member in google_project_iam_member.deployer_egress : member.role]))
  }

  depends_on = [google_project_service.egress_api]
}

resource "google_compute_network" "egress" {
  #checkov:skip=CKV2_GCP_18:The network only carries the connector's outbound traffic to Cloud NAT; nothing listens on it, so there is no ingress to firewall (the implied deny-ingress rule applies).
  count = var.static_egress_ip ? 1 : 0

  project                 = var.project_id
  name                    = "${var.name_prefix}-egress"
  description             = "Carries the functions' outbound traffic to Cloud NAT (static egress IP)."
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [time_sleep.deployer_egress_roles]
}

# The connector's own /28 (a connector given only ip_cidr_range gets a hidden subnet that Cloud NAT cannot name).
# Private Google Access keeps the calls to Google APIs (Firestore, Pub/Sub, Secret Manager, Cloud SQL Admin) on
# Google's network instead of through NAT: only Bling (and Cloud SQL's public IP) leave through the address.
resource "google_compute_subnetwork" "egress" {
  #checkov:skip=CKV_GCP_26:Flow logs on a subnet that holds only the connector would bill per GB for what Cloud NAT's error log and the functions' bling_request logs already show.
  count = var.static_egress_ip ? 1 : 0

  project                  = var.project_id
  name                     = "${var.name_prefix}-egress"
  region                   = var.region
  network                  = google_compute_network.egress[0].id
  ip_cidr_range            = var.egress_subnet_cidr
  private_ip_google_access = true

  depends_on = [time_sleep.deployer_egress_roles]
}

# Two e2-micro instances always on (the minimum), a third under load. ~60 small requests/s at the fleet cap is far
# below an e2-micro's throughput; Google recommends bigger machines for high packet rates (var.egress_connector_machine_type).
resource "google_vpc_access_connector" "egress" {
  count = var.static_egress_ip ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-egress"
  region        = var.region
  machine_type  = var.egress_connector_machine_type
  min_instances = 2
  max_instances = 3

  subnet {
    name       = google_compute_subnetwork.egress[0].name
    project_id = var.project_id
  }

  depends_on = [time_sleep.deployer_egress_roles]
}

# The address Bling sees, reserved so it outlives a re-created NAT.
resource "google_compute_address" "egress" {
  count = var.static_egress_ip ? 1 : 0

  project      = var.project_id
  name         = "${var.name_prefix}-egress"
  description  = "The one address every function reaches Bling from (Cloud NAT)."
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"

  depends_on = [time_sleep.deployer_egress_roles]
}

resource "google_compute_router" "egress" {
  count = var.static_egress_ip ? 1 : 0

  project = var.project_id
  name    = "${var.name_prefix}-egress"
  region  = var.region
  network = google_compute_network.egress[0].id

  depends_on = [time_sleep.deployer_egress_roles]
}

# Only the connector's subnet, only through the reserved address. MANUAL_ONLY: the address never changes under the
# client's allow-list. Ports: a connector instance carries the connections of many function instances to the same
# Bling host (a NAT port is per destination), so each of the at most 3 instances reserves 1024 of the address's
# 64,512 ports instead of the default 64.
resource "google_compute_router_nat" "egress" {
  count = var.static_egress_ip ? 1 : 0

  project                            = var.project_id
  name                               = "${var.name_prefix}-egress"
  region                             = var.region
  router                             = google_compute_router.egress[0].name
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.egress[0].self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  min_ports_per_vm                   = 1024

  subnetwork {
    name                    = google_compute_subnetwork.egress[0].id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  # Port exhaustion and dropped connections show up here (resource.type="nat_gateway").
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }

  depends_on = [time_sleep.deployer_egress_roles]
}
