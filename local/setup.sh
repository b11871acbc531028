#!/usr/bin/env bash
# make setup: the project's virtualenv plus a check of the system tools the local stack needs.
#
# Idempotent: the pip step is skipped while .venv/.setup-stamp is newer than the requirements files.
# PostgreSQL server binaries are installed with apt when missing and we are root; the Google emulators and Java
# cannot come from any registry reachable here, so their absence is reported, not repaired.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.setup-stamp"
PYTHON="${PYTHON:-python3}"
SDK="${GCLOUD_SDK_ROOT:-/usr/lib/google-cloud-sdk}"
problems=()

say() { printf 'setup: %s\n' "$*"; }
# pip, with the machine's pip.conf noise about absent local find-links dropped (full output kept on failure).
run_pip() {
  local out; out=$(mktemp)
  if ! "$@" >"$out" 2>&1; then cat "$out" >&2; rm -f "$out"; return 1; fi
  grep -v "is ignored: it is neither a file nor a directory" "$out" || true
  rm -f "$out"
}

# 1. Python virtualenv -------------------------------------------------------------------------------------------
need_pip=0
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
  need_pip=1
elif [ ! -f "$STAMP" ] || [ requirements.txt -nt "$STAMP" ] || [ requirements-dev.txt -nt "$STAMP" ]; then
  need_pip=1
fi
if [ "$need_pip" = 1 ]; then
  say "installing requirements-dev.txt into $VENV"
  run_pip "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip
  run_pip "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
  touch "$STAMP"
else
  say "$VENV is up to date (delete $STAMP to force a reinstall)"
fi

# 2. PostgreSQL server binaries ----------------------------------------------------------------------------------
pg_initdb() { ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_initdb)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "PostgreSQL server binaries missing: apt-get install -y postgresql"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
if [ -z "$(pg_initdb)" ]; then
  problems+=("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): run 'sudo apt-get install -y postgresql' (Debian/Ubuntu)")
else
  say "PostgreSQL: $(pg_initdb)"
fi

# 3. Java + Google's emulators -----------------------------------------------------------------------------------
if ! command -v java >/dev/null; then
  problems+=("Java (needed by the Pub/Sub and Firestore emulators): 'sudo apt-get install -y openjdk-17-jre-headless'")
else
  say "Java: $(java -version 2>&1 | head -n 1)"
fi
if [ ! -x "$SDK/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; then
  problems+=("Pub/Sub emulator ($SDK/platform/pubsub-emulator): 'gcloud components install pubsub-emulator' or the apt package google-cloud-cli-pubsub-emulator from Google's Cloud SDK repository")
else
  say "Pub/Sub emulator: $SDK/platform/pubsub-emulator"
fi
if [ ! -f "$SDK/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar" ]; then
  problems+=("Firestore emulator ($SDK/platform/cloud-firestore-emulator): 'gcloud components install cloud-firestore-emulator' or the apt package google-cloud-cli-firestore-emulator from Google's Cloud SDK repository")
else
  say "Firestore emulator: $SDK/platform/cloud-firestore-emulator"
fi

if [ "${#problems[@]}" -gt 0 ]; then
  printf '\nsetup: MISSING system tools (the local stack, the tests and the demo need them):\n' >&2
  for p in "${problems[@]}"; do printf '  - %s\n' "$p" >&2; done
  printf '(set GCLOUD_SDK_ROOT if your Google Cloud SDK is not in /usr/lib/google-cloud-sdk)\n' >&2
  exit 1
fi
say "ok"
