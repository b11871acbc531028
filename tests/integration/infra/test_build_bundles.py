"""infra/build_bundles.py produces bundles that deploy: each one imports its entry point with nothing but itself and
the installed requirements on sys.path, and the zip is byte-for-byte reproducible."""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest
from infra_hcl import INFRA, REPO

from shared import topology

_SCRIPT = INFRA / "build_bundles.py"


def _run_build(out: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(_SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def _printed_bundles(stdout: str) -> dict[str, tuple[str, pathlib.Path]]:
    bundles = {}
    for line in stdout.splitlines():
        name, sha256, path = line.split(" ", 2)
        bundles[name] = (sha256, pathlib.Path(path))
    return bundles


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    result = _run_build(out)
    return out, result, _printed_bundles(result.stdout)


def _require_bundle(build, name: str) -> tuple[str, pathlib.Path]:
    _, result, bundles = build
    assert name in bundles, f"no bundle for {name!r}: {result.stderr.strip()}"
    return bundles[name]


def test_build_succeeds_for_every_function(build):
    _, result, bundles = build

    assert result.returncode == 0, result.stderr
    assert set(bundles) == set(topology.ALL_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(topology.ALL_FUNCTIONS))
def test_bundle_holds_the_handler_the_shared_package_and_the_pinned_requirements(build, name):
    sha256, zip_path = _require_bundle(build, name)
    folder = zip_path.with_suffix("")
    with zipfile.ZipFile(zip_path) as archive:
        entries = archive.namelist()
        infos = archive.infolist()

    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() == sha256
    assert {"main.py", "requirements.txt", "shared/__init__.py", "shared/topology.py"} <= set(entries)
    assert (folder / "requirements.txt").read_bytes() == (REPO / "requirements.txt").read_bytes()
    assert not [e for e in entries if "__pycache__" in e or e.endswith(".pyc")]
    assert entries == sorted(entries)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == entries


@pytest.mark.parametrize("name", sorted(topology.ALL_FUNCTIONS))
def test_operator_tools_are_not_shipped_in_a_function_bundle(build, name):
    """shared/ops (reconcile, replay, parked: run by an operator, issue 12) is no function's code."""
    _, zip_path = _require_bundle(build, name)
    with zipfile.ZipFile(zip_path) as archive:
        entries = archive.namelist()
    assert (REPO / "shared" / "ops" / "reconcile.py").is_file(), "the tools moved: update this test"
    assert [e for e in entries if e.startswith("shared/ops/")] == []
    assert "shared/listing.py" in entries


def test_rebuilding_unchanged_sources_gives_identical_zips(build, tmp_path):
    _, _, first = build
    second = _printed_bundles(_run_build(tmp_path).stdout)

    assert first, "nothing was built"
    assert {name: sha for name, (sha, _) in second.items()} == {name: sha for name, (sha, _) in first.items()}


def _site_packages() -> list[str]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if os.path.isdir(p))


@pytest.mark.parametrize("name,entry_point", sorted(topology.ALL_FUNCTIONS.items()))
def test_bundle_imports_its_entry_point_without_the_repository(build, name, entry_point):
    _, zip_path = _require_bundle(build, name)
    bundle = zip_path.with_suffix("")
    stdlib = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
    # The runtime's view: the bundle folder, the standard library and the installed requirements; not the repo.
    code = (
        "import sys\n"
        f"sys.path[:] = {[str(bundle), *stdlib, os.path.join(stdlib[0], 'lib-dynload'), *_site_packages()]!r}\n"
        "import main, shared\n"
        f"assert shared.__file__.startswith({str(bundle)!r}), shared.__file__\n"
        f"handler = getattr(main, {entry_point!r})\n"
        "assert callable(handler), handler\n"
        "print('ok')\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}

    result = subprocess.run([sys.executable, "-I", "-c", code], cwd=bundle, env=env, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
