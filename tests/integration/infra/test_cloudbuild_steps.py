"""The Cloud Build steps that can run here, run here: the configuration step, the migrations step (with the BI
role) against a real PostgreSQL through the same code path, and the test step's install list checked against apt.

The migrations run as a user shaped like Cloud SQL's bling_etl (LOGIN CREATEROLE CREATEDB, not a superuser, owner
of its database), because that is who runs them in production.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pg8000.dbapi
import pytest
from infra_hcl import INFRA, REPO, load_cloudbuild

_CLOUDBUILD = load_cloudbuild()


def _step(step_id: str) -> dict:
    return next(s for s in _CLOUDBUILD["steps"] if s["id"] == step_id)


def _env_list(step: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in step.get("env", []))


# --- config step -------------------------------------------------------------------------------------------------

def _fetch_config(tmp_path: pathlib.Path, uri: str, project: str, prefix: str = "bling"):
    env = {**os.environ, "CONFIG_URI": uri, "EXPECTED_PROJECT": project, "EXPECTED_NAME_PREFIX": prefix,
           "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config")}
    return subprocess.run(["bash", str(INFRA / "fetch_config.sh"), str(tmp_path / "terraform.tfvars")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_config_step_is_the_first_and_runs_fetch_config():
    step = _CLOUDBUILD["steps"][0]

    assert step["id"] == "config"
    assert step["args"] == ["infra/fetch_config.sh", "infra/terraform.tfvars"]
    assert _env_list(step)["CONFIG_URI"] == "gs://${_TF_STATE_BUCKET}/${_TF_STATE_PREFIX}/terraform.tfvars"


def test_config_step_copies_a_configuration_for_this_project(tmp_path):
    source = tmp_path / "operator.tfvars"
    source.write_text('project_id = "acme-etl"\nfirestore_location = "nam5"\nalert_email = "ops@acme.example"\n')

    result = _fetch_config(tmp_path, str(source), "acme-etl")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "terraform.tfvars").read_text() == source.read_text()
    assert "3 settings, project acme-etl" in result.stdout


@pytest.mark.skipif(shutil.which("gcloud") is None and os.environ.get("CI") != "true", reason="gcloud not installed")
def test_config_step_stops_loudly_when_the_object_is_missing(tmp_path):
    # The real gcloud, no credentials: the copy fails as it does for a missing object or a missing grant.
    result = _fetch_config(tmp_path, "gs://bling-etl-no-such-bucket-for-tests/bling-etl/terraform.tfvars", "acme-etl")

    assert result.returncode == 1
    assert "cannot read gs://bling-etl-no-such-bucket-for-tests/bling-etl/terraform.tfvars" in result.stderr
    assert not (tmp_path / "terraform.tfvars").exists()


@pytest.mark.parametrize("content, message", [
    ('project_id = "other-project"\n', "is for project other-project, but this build runs in acme-etl"),
    ('alert_email = "ops@acme.example"\n', "sets no project_id"),
    ('project_id = "acme-etl"\nname_prefix = "acme"\n', "pass --substitutions=_NAME_PREFIX=acme"),
])
def test_config_step_refuses_a_configuration_for_another_deployment(tmp_path, content, message):
    source = tmp_path / "operator.tfvars"
    source.write_text(content)

    result = _fetch_config(tmp_path, str(source), "acme-etl")

    assert result.returncode == 1
    assert message in result.stderr


# --- test step ---------------------------------------------------------------------------------------------------

def test_test_step_installs_through_the_image_entrypoint_what_setup_checks_for():
    step = _step("test")
    env = _env_list(step)
    setup = (REPO / "local" / "setup.sh").read_text(encoding="utf-8")

    # The :stable image has Google's apt repository only through its entrypoint's COMPONENTS path.
    assert "entrypoint" not in step
    assert step["name"].startswith("gcr.io/google.com/cloudsdktool/google-cloud-cli:")
    assert step["args"] == ["make", "test"]
    assert env["CI"] == "true"
    components = env["COMPONENTS"].split()
    apt_packages = env["APT_PACKAGES"].split()
    assert {"google-cloud-cli-pubsub-emulator", "google-cloud-cli-firestore-emulator"} <= set(components)
    # What local/setup.sh requires, plus npm for the provider schema (infra/check_offline.sh).
    assert {"make", "python3-venv", "postgresql", "npm"} <= set(apt_packages)
    assert any(p.startswith("openjdk-") and p.endswith("-jre-headless") for p in apt_packages)
    for component in components:
        assert component in setup, f"local/setup.sh does not name {component}: it checks another emulator"


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian machine")
def test_every_package_the_test_step_installs_exists_in_apt():
    env = _env_list(_step("test"))
    packages = env["APT_PACKAGES"].split() + env["COMPONENTS"].split()

    result = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True, timeout=60)

    candidates = {}
    current = None
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            candidates[current] = line.split(":", 1)[1].strip()
    missing = [p for p in packages if candidates.get(p) in (None, "(none)")]
    assert not missing, f"apt knows no candidate for {missing}"


# --- bundles and migrations steps -----------------------------------------------------------------------------------

def test_bundles_step_builds_every_bundle(tmp_path):
    step = _step("bundles")
    out = tmp_path / "bundles"
    args = [a if a != "build/bundles" else str(out) for a in step["args"]]

    subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True, timeout=300)

    assert sorted(p.name for p in out.glob("*.zip")) == sorted(
        f"{p.name}.zip" for p in (REPO / "functions").iterdir() if (p / "main.py").is_file())


@pytest.fixture
def cloud_sql_like_database(postgres):
    """A database owned by a LOGIN CREATEROLE CREATEDB non-superuser, as Cloud SQL makes bling_etl."""
    suffix = uuid.uuid4().hex[:8]
    user, password, database = f"etl_{suffix}", uuid.uuid4().hex, f"bi_{suffix}"
    # The cluster's superuser, over its private socket (the stack's own user is a plain database owner).
    admin = pg8000.dbapi.connect(user="postgres", database="postgres",
                                 unix_sock=str(postgres.socket_dir / f".s.PGSQL.{postgres.port}"))
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"CREATE ROLE {user} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'")
    cur.execute(f"CREATE DATABASE {database} OWNER {user}")
    env = {**postgres.env(), "DB_USER": user, "DB_PASSWORD": password, "DB_NAME": database}
    try:
        yield env
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        cur.execute(f"REASSIGN OWNED BY {user} TO CURRENT_USER")
        cur.execute(f"DROP OWNED BY {user}")
        cur.execute(f"DROP ROLE IF EXISTS {user}")
        admin.close()


def _migrate_step_commands() -> list[list[str]]:
    """The migrate step's python commands, in order (pip install aside: the venv has requirements.txt)."""
    script = _step("migrate")["args"][-1]
    commands = [line.split() for line in script.splitlines() if line.strip().startswith("python ")]
    return [[sys.executable, *c[1:]] for c in commands if c[1:3] != ["-m", "pip"]]


def test_migrate_step_creates_a_read_only_bi_login(cloud_sql_like_database):
    bi_password = "bi-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "CLOUD_SQL_INSTANCE"}
    env.update(cloud_sql_like_database, BI_PASSWORD=bi_password)
    commands = _migrate_step_commands()
    assert [c[1:3] for c in commands] == [["-m", "shared.migrate"], ["infra/bi_role.py"]]

    for command in commands:
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert bi_password not in result.stdout + result.stderr

    bi = pg8000.dbapi.connect(host=env["DB_HOST"], port=int(env["DB_PORT"]), database=env["DB_NAME"],
                              user="bling_bi", password=bi_password, timeout=30)
    try:
        cur = bi.cursor()
        cur.execute("SELECT count(*) FROM nfe")
        assert cur.fetchone() == [0]
        cur.execute("SELECT count(*) FROM etl_window_resumo")
        assert cur.fetchone() == [0]
        cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == [False, False, False]
        bi.rollback()
        for statement in ("INSERT INTO nfe_situacao (codigo, nome) VALUES (999, 'x')",
                          "CREATE TABLE bi_scratch (x int)",
                          f"SET ROLE {env['DB_USER']}"):
            with pytest.raises(pg8000.dbapi.DatabaseError):
                cur.execute(statement)
            bi.rollback()
    finally:
        bi.close()

    # Running the step again (every build does) keeps working and keeps the password in force.
    for command in commands:
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    pg8000.dbapi.connect(host=env["DB_HOST"], port=int(env["DB_PORT"]), database=env["DB_NAME"],
                         user="bling_bi", password=bi_password, timeout=30).close()
