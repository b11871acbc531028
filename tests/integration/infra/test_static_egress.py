"""The static egress IP option (var.static_egress_ip, docs/decisions/012-fleet-egress-and-ip-limits.md): when on,
every function leaves Google through one reserved address (Serverless VPC Access connector -> Cloud Router + Cloud
NAT) and the fleet-wide cap under Bling's per-IP limits is on; when off, none of it exists and the cap is 0 (off).

terraform cannot plan offline, so each setting's expression is evaluated for both values of the variable with
infra_hcl.evaluate, which understands the few forms these expressions use and fails on anything else.
"""
from __future__ import annotations

import re

import pytest
from infra_hcl import INFRA, REPO, block, evaluate, load_infra, reference, string_list

_FLAG = "static_egress_ip"
# One of each, all named after the connector's role; together they are the static egress path.
_EGRESS_RESOURCES = {
    ("google_compute_network", "egress"),
    ("google_compute_subnetwork", "egress"),
    ("google_vpc_access_connector", "egress"),
    ("google_compute_address", "egress"),
    ("google_compute_router", "egress"),
    ("google_compute_router_nat", "egress"),
}
# Resource types that bill by the hour or open a network path: none of them may exist with the option off.
_NETWORK_TYPE = re.compile(r"^google_(compute_|vpc_access_)")
_FLEET_ENV = {"BLING_FLEET_RATE_PER_S": "bling_fleet_rate_per_s",
              "BLING_FLEET_ERRORS_PER_10S": "bling_fleet_errors_per_10s"}


@pytest.fixture(scope="module")
def tf():
    return load_infra()


def _variables(tf, on: bool) -> dict:
    values = {name: body.get("default") for name, body in tf.variables.items()}
    values[_FLAG] = on
    return values


@pytest.fixture(scope="module", params=[True, False], ids=["on", "off"])
def on(request) -> bool:
    return request.param


def test_static_egress_ip_is_an_opt_in_boolean(tf):
    variable = tf.variables[_FLAG]

    assert variable["type"] in ("bool", "${bool}")
    assert variable["default"] is False
    assert "NAT" in variable["description"] and "RUNBOOK" in variable["description"]


def test_every_egress_resource_exists_exactly_when_the_option_is_on(tf, on):
    network = {key for key in tf.resources if _NETWORK_TYPE.match(key[0])}

    assert network == _EGRESS_RESOURCES
    for type_, name in sorted(network):
        count = evaluate(tf.resource(type_, name)["count"], _variables(tf, on))
        assert count == (1 if on else 0), f"{type_}.{name}"


def test_with_the_option_on_every_function_sends_all_its_traffic_through_the_connector(tf, on):
    function = tf.resource("google_cloudfunctions2_function", "function")
    service = block(function["service_config"])
    variables = _variables(tf, on)

    assert reference(function["for_each"]) == "local.functions"  # one service_config for every function
    if on:
        assert evaluate(service["vpc_connector"], variables) == "google_vpc_access_connector.egress[0].id"
        assert evaluate(service["vpc_connector_egress_settings"], variables) == "ALL_TRAFFIC"
    else:
        assert evaluate(service["vpc_connector"], variables) is None
        assert evaluate(service["vpc_connector_egress_settings"], variables) is None
    # A function must not start egressing through a connector whose NAT does not exist yet: it would have no route
    # to Bling at all.
    assert "${google_compute_router_nat.egress}" in function["depends_on"]


def test_the_nat_sends_the_connector_subnet_out_through_the_reserved_address_only(tf):
    subnet = tf.resource("google_compute_subnetwork", "egress")
    connector = tf.resource("google_vpc_access_connector", "egress")
    address = tf.resource("google_compute_address", "egress")
    router = tf.resource("google_compute_router", "egress")
    nat = tf.resource("google_compute_router_nat", "egress")
    nat_subnet = block(nat["subnetwork"])

    assert tf.resource("google_compute_network", "egress")["auto_create_subnetworks"] is False
    assert subnet["network"] == router["network"] == "${google_compute_network.egress[0].id}"
    # A connector needs its own /28; a connector given only ip_cidr_range gets a hidden subnet that NAT cannot name.
    assert evaluate(subnet["ip_cidr_range"], _variables(tf, True)).endswith("/28")
    assert block(connector["subnet"])["name"] == "${google_compute_subnetwork.egress[0].name}"
    assert "ip_cidr_range" not in connector and "network" not in connector
    assert address["address_type"] == "EXTERNAL"
    assert nat["router"] == "${google_compute_router.egress[0].name}"
    # MANUAL_ONLY: the address never changes under the client's allow-list (AUTO_ONLY picks and drops addresses).
    assert nat["nat_ip_allocate_option"] == "MANUAL_ONLY"
    assert nat["nat_ips"] == ["${google_compute_address.egress[0].self_link}"]
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert nat_subnet["name"] == "${google_compute_subnetwork.egress[0].id}"
    assert nat_subnet["source_ip_ranges_to_nat"] == ["ALL_IP_RANGES"]


def test_the_fleet_cap_is_on_with_the_static_ip_and_zero_without(tf, on):
    env_bling = tf.locals["env_bling"]
    variables = _variables(tf, on)

    assert variables["bling_fleet_rate_per_s"] == 40
    assert variables["bling_fleet_errors_per_10s"] == 250
    for env, variable in _FLEET_ENV.items():
        expected = str(variables[variable]) if on else "0"
        assert evaluate(env_bling[env], variables) == expected, env
    # env_bling goes to every function that calls Bling (functions.tf), the only ones that spend the IP's budget.
    assert "f.uses_bling ? local.env_bling : {}" in tf.locals["function_env"]


def test_the_fleet_cap_defaults_stay_under_bling_s_per_ip_limits(tf):
    rate = tf.variables["bling_fleet_rate_per_s"]
    errors = tf.variables["bling_fleet_errors_per_10s"]

    # Bling blocks an IP at 600 requests or 300 errors in 10 s: the cap keeps a margin under both.
    assert rate["default"] * 10 < 600
    assert errors["default"] < 300
    assert "<= 60" in block(rate["validation"])["condition"]
    assert "< 300" in block(errors["validation"])["condition"]


def test_the_egress_ip_is_output_for_the_client_s_allow_list(tf, on):
    output = tf.outputs["egress_ip"]

    assert evaluate(output["value"], _variables(tf, on)) == (
        "google_compute_address.egress[0].address" if on else None)


def test_the_apis_and_the_deployer_roles_of_the_egress_path_exist_only_with_it(tf, on):
    apis = tf.resource("google_project_service", "egress_api")
    roles = tf.resource("google_project_iam_member", "deployer_egress")
    variables = _variables(tf, on)

    assert evaluate(apis["for_each"], variables, tf.locals) == (
        {"compute.googleapis.com", "vpcaccess.googleapis.com"} if on else set())
    assert evaluate(roles["for_each"], variables, tf.locals) == (
        {"roles/compute.networkAdmin", "roles/vpcaccess.admin"} if on else set())
    assert roles["member"] == "${google_service_account.deployer.member}"
    # The path waits for the grants (and the APIs) to be seen, and is destroyed (option turned off) while the
    # deployer still holds them: every resource depends on the pause that depends on both.
    pause = tf.resource("time_sleep", "deployer_egress_roles")
    assert evaluate(pause["count"], variables) == (1 if on else 0)
    assert "google_project_iam_member.deployer_egress" in pause["triggers"]["roles"]
    assert pause["depends_on"] == ["${google_project_service.egress_api}"]
    for type_, name in _EGRESS_RESOURCES:
        assert tf.resource(type_, name)["depends_on"] == ["${time_sleep.deployer_egress_roles}"], f"{type_}.{name}"
    # The project-wide deployer roles stay what the runbook lists: the egress roles are not among them.
    assert not {"roles/compute.networkAdmin", "roles/vpcaccess.admin"} & set(string_list(tf.locals["deployer_roles"]))


def test_nothing_in_terraform_is_per_bling_account(tf):
    """Accounts are runtime data (issue 14): connecting a client must never need a terraform apply."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(INFRA.glob("*.tf")))
    # Service accounts are Google identities, not Bling accounts: take them out before looking.
    text = re.sub(r"service[_ ]account\w*|serviceAccount\w*|account_id", "", text, flags=re.I)

    assert not [name for name in tf.variables if re.search("account|tenant", name)]
    assert not re.findall(r"\b(?:var|local)\.\w*(?:account|tenant)\w*", text)
    # The BI password secret is the legacy single role's; per-account reader passwords are set by the operator.
    assert set(string_list(tf.locals["deploy_only_secrets"])) == {"bling-bi-password"}
    assert not re.search(r'secret_id\s*=\s*"[^"]*\$\{', text)


def test_the_runbook_explains_the_option_and_how_to_read_the_ip(tf):
    runbook = (REPO / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    section = runbook.split("## One egress IP for all accounts (Cloud NAT)", 1)

    assert len(section) == 2, "docs/RUNBOOK.md has no section 'One egress IP for all accounts (Cloud NAT)'"
    body = section[1].split("\n## ", 1)[0]
    assert f"{_FLAG} = true" in body
    assert "output -raw egress_ip" in body
    for name in ("bling_fleet_rate_per_s", "bling_fleet_errors_per_10s", *_FLEET_ENV):
        assert name in body, name
    assert "grant-reader" in runbook
    assert (REPO / "docs" / "decisions" / "012-fleet-egress-and-ip-limits.md").is_file()


def test_shared_config_reads_the_fleet_cap_variables():
    source = (REPO / "shared" / "config.py").read_text(encoding="utf-8")

    for env in _FLEET_ENV:
        assert re.search(rf"""["']{env}["']""", source), env
