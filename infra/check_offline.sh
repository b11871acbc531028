#!/usr/bin/env bash
# The Terraform checks that work without network access to the providers (part of `make test`):
#   1. terraform fmt -check        when terraform is installed (it is not installable on every machine: skipped then)
#   2. the provider schema check (infra/schema_check.py, never skipped): every resource, data, ephemeral and provider
#      block against the published schema of the pinned google 6.50.0 and time 0.13.1 providers, taken from their
#      prebuilt CDKTF npm packages (@cdktf/provider-google 16.12.1, @cdktf/provider-time 11.0.1; see
#      infra/provider_schema.py). Fetched once with npm into build/provider-schema/, then it runs in under a second.
#   3. checkov, built-in GCP checks + the project's policies in infra/policies (never skipped)
# `terraform init/validate/plan` need the providers from the registry and are left to Cloud Build.
#
# checkov lives in its own venv (.venv-checkov/, created here on first use) because it installs bc-python-hcl2,
# which shadows the `hcl2` module that tests/integration/infra uses from the main venv.
#
# Built-in checks that fail for good reasons are skipped where the resource is declared (#checkov:skip=ID:reason),
# never here. Exit status: non-zero if any check fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKOV_VERSION="3.3.30"
CHECKOV_VENV="${CHECKOV_VENV:-$REPO/.venv-checkov}"
cd "$REPO"

status=0

# --- terraform fmt --------------------------------------------------------------------------------------------------
if command -v terraform >/dev/null 2>&1; then
  # A TF_CLI_CONFIG_FILE that names a missing file makes terraform warn on every run; fmt needs no configuration.
  tf_config="$(mktemp)"
  trap 'rm -f "$tf_config"' EXIT
  if TF_CLI_CONFIG_FILE="$tf_config" terraform fmt -check -recursive -diff infra; then
    echo "terraform fmt: ok"
  else
    echo "terraform fmt: FAILED (run: terraform fmt -recursive infra)" >&2
    status=1
  fi
else
  echo "terraform fmt: skipped: terraform not installed"
fi

# --- provider schema ------------------------------------------------------------------------------------------------
SCHEMA_CACHE="${SCHEMA_CACHE:-$REPO/build/provider-schema}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"  # python-hcl2 comes from requirements-dev.txt
(
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/provider-schema-$(printf '%s' "$SCHEMA_CACHE" | cksum | cut -d' ' -f1).lock"
    flock 9
  fi
  python3 infra/provider_schema.py --cache "$SCHEMA_CACHE" >/dev/null
)
if "$PYTHON" infra/schema_check.py --schemas "$SCHEMA_CACHE" --dir infra; then
  :
else
  echo "schema check: FAILED" >&2
  status=1
fi

# --- checkov --------------------------------------------------------------------------------------------------------
install_checkov() {
  echo "checkov: creating $CHECKOV_VENV (first run only)"
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
    || { echo "checkov: $CHECKOV_VERSION not installable, taking the version pip finds" >&2;
         "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check checkov; }
}

# The installed version from the package metadata: `checkov --version` imports all of checkov (~3 s) for the same.
checkov_version() {
  "$CHECKOV_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null
}

(
  # Two runs at once (make test and a test that calls this script) must not build the venv twice.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/checkov-venv-$(printf '%s' "$CHECKOV_VENV" | cksum | cut -d' ' -f1).lock"
    flock 9
  fi
  if ! [ -x "$CHECKOV_VENV/bin/checkov" ] || ! checkov_version >/dev/null; then
    install_checkov
  fi
)

echo "checkov: $(checkov_version)"
if "$CHECKOV_VENV/bin/checkov" -d infra --framework terraform --skip-download \
    --external-checks-dir infra/policies --compact --quiet; then
  echo "checkov: ok"
else
  echo "checkov: FAILED" >&2
  status=1
fi

exit "$status"
