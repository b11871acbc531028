"""Build the deployable source bundle of every function: the one script that does it (Terraform and Cloud Build use it).

For each function in shared.topology.ALL_FUNCTIONS it writes

    <out>/<name>/            main.py (and any other non-test module of functions/<name>/), shared/ (without the
                             operator tools of shared/ops/), requirements.txt
    <out>/<name>.zip         the same files, zipped deterministically

The zip has sorted entries, a fixed timestamp and fixed permissions, so its sha256 changes only when a file's content
(or the set of files) changes. infra/storage.tf names the uploaded object after that sha256: an unchanged bundle
redeploys nothing, a changed one redeploys its function.

    python infra/build_bundles.py [--out build/bundles]

prints one line per bundle: `<name> <sha256> <zip path>`.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import pathlib
import shutil
import sys
import zipfile

_REPO = pathlib.Path(__file__).resolve().parent.parent
_DEFAULT_OUT = _REPO / "build" / "bundles"
# 1980-01-01 00:00:00 is the earliest time a zip entry can carry.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644
# Never shipped: caches, and tests that may sit next to a handler.
_EXCLUDED = ("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "test_*.py", "*_test.py", "conftest.py", ".*")
# The function folder's own requirements.txt, if any, would disagree with the repo's pinned one: the repo's wins.
_EXCLUDED_FROM_FUNCTION = ("requirements.txt",)
# Operator tools (reconcile, replay of dead letters, parked counts) run from a workstation, never in a function.
_EXCLUDED_FROM_SHARED = ("ops",)


def _excluded(name: str, patterns: tuple[str, ...] = _EXCLUDED) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _copy_tree(source: pathlib.Path, target: pathlib.Path, extra_excluded: tuple[str, ...] = ()) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if _excluded(entry.name) or _excluded(entry.name, extra_excluded):
            continue
        if entry.is_dir():
            _copy_tree(entry, target / entry.name)
        else:
            shutil.copyfile(entry, target / entry.name)


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def write_deterministic_zip(folder: pathlib.Path, zip_path: pathlib.Path) -> str:
    """Zip every file under `folder` (paths relative to it) and return the zip's sha256."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in _files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | _FILE_MODE) << 16  # regular file, rw-r--r--
            info.create_system = 3  # Unix, so the mode above is honoured whatever OS builds the zip
            archive.writestr(info, path.read_bytes())
    return hashlib.sha256(zip_path.read_bytes()).hexdigest()


def build_bundle(name: str, out: pathlib.Path, repo: pathlib.Path = _REPO) -> tuple[pathlib.Path, str]:
    """Lay out and zip one function's bundle; return (zip path, sha256)."""
    function_dir = repo / "functions" / name
    if not (function_dir / "main.py").is_file():
        raise FileNotFoundError(f"{function_dir / 'main.py'} does not exist: function {name!r} has no handler yet")
    bundle_dir = out / name
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    _copy_tree(function_dir, bundle_dir, _EXCLUDED_FROM_FUNCTION)
    _copy_tree(repo / "shared", bundle_dir / "shared", _EXCLUDED_FROM_SHARED)
    shutil.copyfile(repo / "requirements.txt", bundle_dir / "requirements.txt")
    zip_path = out / f"{name}.zip"
    return zip_path, write_deterministic_zip(bundle_dir, zip_path)


def function_names(repo: pathlib.Path = _REPO) -> list[str]:
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from shared.topology import ALL_FUNCTIONS

    return sorted(ALL_FUNCTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=_DEFAULT_OUT,
                        help=f"output folder (default: {_DEFAULT_OUT.relative_to(_REPO)})")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    failed = 0
    # Build every bundle that can be built, then fail if any could not: a partial set must never be deployed.
    for name in function_names():
        try:
            zip_path, sha256 = build_bundle(name, out)
        except FileNotFoundError as exc:
            print(f"build_bundles: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name} {sha256} {zip_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
