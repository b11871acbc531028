#!/usr/bin/env bash
# Cloud Build step "config": copy the operator's terraform.tfvars from its documented place and check it, or stop.
#
#   CONFIG_URI=gs://BUCKET/bling-etl/terraform.tfvars EXPECTED_PROJECT=my-project [EXPECTED_NAME_PREFIX=bling] \
#     bash infra/fetch_config.sh infra/terraform.tfvars
#
# CONFIG_URI may also be a local file: check a configuration before uploading it (docs/RUNBOOK.md).
# Why: `gcloud builds submit` leaves out .gitignored files, so without this step the plan would see only what the
# build passes and silently take every other variable's default (docs/decisions/006-*.md).
set -euo pipefail

target="${1:?usage: fetch_config.sh TARGET}"
: "${CONFIG_URI:?CONFIG_URI (gs://BUCKET/PREFIX/terraform.tfvars) is required}"
: "${EXPECTED_PROJECT:?EXPECTED_PROJECT (PROJECT_ID of the build) is required}"
expected_prefix="${EXPECTED_NAME_PREFIX:-bling}"

fail() {
  echo "config: $*" >&2
  echo "config: upload the configuration first: gcloud storage cp infra/terraform.tfvars $CONFIG_URI (docs/RUNBOOK.md, \"Deploying with Cloud Build\")" >&2
  exit 1
}

case "$CONFIG_URI" in
  gs://*) gcloud storage cp "$CONFIG_URI" "$target" >/dev/null 2>&1 || fail "cannot read $CONFIG_URI (missing, or the deployer account cannot read it)" ;;
  *) [ -f "$CONFIG_URI" ] || fail "$CONFIG_URI does not exist"; [ "$CONFIG_URI" -ef "$target" ] || cp "$CONFIG_URI" "$target" ;;
esac

# The value of a top-level `name = "value"` line, or empty.
value_of() { sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$target" | tail -n 1; }

project="$(value_of project_id)"
[ -n "$project" ] || fail "$CONFIG_URI sets no project_id"
[ "$project" = "$EXPECTED_PROJECT" ] || fail "$CONFIG_URI is for project $project, but this build runs in $EXPECTED_PROJECT"
prefix="$(value_of name_prefix)"
[ "${prefix:-bling}" = "$expected_prefix" ] \
  || fail "$CONFIG_URI sets name_prefix = \"${prefix:-bling}\" but the build runs as ${expected_prefix}-deployer: pass --substitutions=_NAME_PREFIX=${prefix:-bling}"

echo "config: $CONFIG_URI -> $target ($(grep -c -E '^[[:space:]]*[a-z_]+[[:space:]]*=' "$target") settings, project $project)"
