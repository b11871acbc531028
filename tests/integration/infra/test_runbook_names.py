"""docs/RUNBOOK.md and README.md name only things that exist: Terraform outputs, resource names, topics and ops
commands."""
from __future__ import annotations

import re

from infra_hcl import REPO, load_infra, render, string_list

from shared import topology

# Both documents a user follows; the README's deploy and authorization sections point into infra/ as well.
_RUNBOOK = "\n".join((REPO / doc).read_text(encoding="utf-8") for doc in ("docs/RUNBOOK.md", "README.md"))


def _deployed_names() -> set[str]:
    tf = load_infra()
    defaults = {name: body.get("default") for name, body in tf.variables.items()}
    names = {render(tf.resource("google_cloudfunctions2_function", "function")["name"], fn, variables=defaults)
             for fn in tf.locals["functions"]}
    names |= {render(tf.resource("google_sql_database_instance", "main")["name"], "", variables=defaults)}
    names |= {tf.resource("google_cloud_scheduler_job", "job")["name"]}
    names |= set(tf.locals["secrets"]) | set(string_list(tf.locals["deploy_only_secrets"]))
    names |= {render(tf.resource("google_service_account", "deployer")["account_id"], "", variables=defaults)}
    # The static egress path (network.tf): network, subnet, connector, address, router and NAT share one name.
    names |= {render(body["name"], "", variables=defaults) for (type_, _), body in tf.resources.items()
              if type_.startswith(("google_compute_", "google_vpc_access_"))}
    for route in topology.ROUTES:
        names |= {route.topic, route.dead_letter_topic, route.subscription, route.dead_letter_subscription}
    # The Terraform state prefix (cloudbuild.yaml's _TF_STATE_PREFIX default) and the label value.
    names |= {"bling-etl"}
    return names


def test_every_bling_name_in_the_runbook_is_deployed():
    text = re.sub(r"\(#[a-z0-9-]+\)", "", _RUNBOOK)  # in-page links such as (#creating-the-bling-app)
    mentioned = set(re.findall(r"\bbling-[a-z0-9-]*[a-z0-9]\b", text))

    assert mentioned - _deployed_names() == set()


def test_every_terraform_output_in_the_runbook_is_declared():
    outputs = set(load_infra().outputs)
    mentioned = set(re.findall(r"output -raw ([a-z_]+)", _RUNBOOK))
    mentioned |= set(re.findall(r"`(auth_[a-z_]+_url)`", _RUNBOOK))

    assert mentioned and mentioned <= outputs


def test_every_python_module_the_runbook_runs_exists():
    modules = set(re.findall(r"python -m ([a-z_.]+)", _RUNBOOK))

    assert modules
    for module in modules:
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
