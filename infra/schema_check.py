"""Check infra/*.tf against the providers' published schemas, offline (part of infra/check_offline.sh).

    python infra/schema_check.py --schemas build/provider-schema [--dir infra]

For every resource, data, ephemeral and provider block, recursively through nested and dynamic blocks, reports:
  - an argument or block the provider does not have (a typo, or an argument of another resource or version);
  - a required argument or a required block that is missing;
  - an argument written as a block, or a block written as an argument (`settings = {...}`);
  - a block of at most one item written twice;
  - a literal of the wrong type (`disk_size = "ten"`, `labels = ["a"]`, `ipv4_enabled = 1`), with Terraform's own
    conversions allowed (`"10"` for a number, `true` for a string, `"false"` for a bool);
  - a provider version in infra/versions.tf or infra/.terraform.lock.hcl other than the one the schema describes.
Expressions (references, function calls, templates) are not evaluated: their type is Terraform's to check at plan.

The schemas come from infra/provider_schema.py (the prebuilt CDKTF packages of the pinned provider versions).
Ephemeral resources are not in those packages; an `ephemeral "T"` block is checked against the data source T,
which the provider generates from the same fields (true of google_secret_manager_secret_version in 6.50.0).
Exit status 1 and one line per finding when anything is wrong.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections.abc import Iterator
from typing import Any

import hcl2

_META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
_BUILTIN_RESOURCES = {"terraform_data"}  # Terraform's own (no provider): nothing to check it against
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _literal_kind(value: Any) -> str | None:
    """The kind of a literal as python-hcl2 gives it, or None for an expression whose type only Terraform knows."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"' and "${" not in value:
            return "string"
        return None
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return None


def _type_errors(value: Any, expected: Any, where: str) -> Iterator[str]:
    kind = _literal_kind(value)
    if kind in (None, "null") or expected == "any":
        return
    if expected == "string":
        if kind not in ("string", "number", "bool"):
            yield f"{where}: a {kind} literal where the provider expects a string"
    elif expected == "number":
        if kind == "string" and _NUMBER.match(_unquote(value)):
            return
        if kind != "number":
            yield f"{where}: {value!r} is not a number"
    elif expected == "bool":
        if kind == "string" and _unquote(value) in ("true", "false"):
            return
        if kind != "bool":
            yield f"{where}: {value!r} is not a bool"
    elif expected[0] == "list":
        if kind != "list":
            yield f"{where}: a {kind} literal where the provider expects a list of {expected[1]}"
            return
        for index, item in enumerate(value):
            yield from _type_errors(item, expected[1], f"{where}[{index}]")
    elif expected[0] == "map":
        if kind != "object":
            yield f"{where}: a {kind} literal where the provider expects a map of {expected[1]}"
            return
        for key, item in value.items():
            yield from _type_errors(item, expected[1], f"{where}[{_unquote(key)}]")


def check_body(body: dict, schema: dict, where: str, meta: set[str] = frozenset()) -> Iterator[str]:
    attributes, blocks = schema["attributes"], schema["blocks"]
    present_blocks: set[str] = set()
    for raw_key, value in body.items():
        if raw_key.startswith("__"):
            continue
        key = _unquote(raw_key)
        if key in meta:
            continue
        if key == "dynamic" and isinstance(value, list):
            for dynamic in value:
                for raw_name, inner in dynamic.items():
                    if raw_name.startswith("__"):
                        continue
                    name = _unquote(raw_name)
                    if name not in blocks:
                        yield f"{where}: dynamic \"{name}\": the provider has no block \"{name}\""
                        continue
                    present_blocks.add(name)
                    for content in inner.get("content", []):
                        yield from check_body(content, blocks[name]["block"], f"{where}.{name}")
            continue
        if _is_block(value):
            if key in blocks:
                present_blocks.add(key)
                if not blocks[key]["list"] and len(value) > 1:
                    yield f"{where}: block \"{key}\" is written {len(value)} times; the provider allows one"
                for item in value:
                    yield from check_body(item, blocks[key]["block"], f"{where}.{key}")
            elif key in attributes:
                yield f"{where}: \"{key}\" is an argument, written as a block (use {key} = ...)"
            else:
                yield f"{where}: the provider has no block \"{key}\""
            continue
        if key in attributes:
            yield from _type_errors(value, attributes[key]["type"], f"{where}.{key}")
        elif key in blocks:
            yield f"{where}: \"{key}\" is a block, written as an argument (use {key} {{ ... }})"
            present_blocks.add(key)
        else:
            yield f"{where}: the provider has no argument \"{key}\""
    present = {_unquote(k) for k in body}
    for name, spec in attributes.items():
        if spec["required"] and name not in present:
            yield f"{where}: required argument \"{name}\" is missing"
    for name, spec in blocks.items():
        if spec["required"] and name not in present_blocks:
            yield f"{where}: required block \"{name}\" is missing"


def _provider_of(terraform_type: str) -> str:
    return terraform_type.split("_", 1)[0]


def _labelled(entries: list[dict], depth: int) -> Iterator[tuple[list[str], dict]]:
    """(labels, body) of `resource "T" "N" {...}` (depth 2) or `provider "P" {...}` (depth 1)."""
    for entry in entries:
        for raw_label, inner in entry.items():
            if raw_label.startswith("__"):
                continue
            if depth == 1:
                yield [_unquote(raw_label)], inner
            else:
                for labels, body in _labelled([inner], depth - 1):
                    yield [_unquote(raw_label), *labels], body


def _pinned_versions(parsed_files: dict[str, dict], lock_text: str | None) -> Iterator[tuple[str, str, str]]:
    for filename, parsed in parsed_files.items():
        for terraform in parsed.get("terraform", []):
            for required in terraform.get("required_providers", []):
                for name, spec in required.items():
                    if isinstance(spec, dict) and "version" in spec:
                        yield filename, _unquote(name), _unquote(spec["version"])
    if lock_text is not None:
        for source, version in re.findall(r'provider "([^"]+)" \{\s*version\s*=\s*"([^"]+)"', lock_text):
            yield ".terraform.lock.hcl", source.rsplit("/", 1)[-1], version


def check_folder(folder: pathlib.Path, schemas: dict[str, dict]) -> list[str]:
    findings: list[str] = []
    parsed_files = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed_files[path.name] = hcl2.load(handle)
    lock = folder / ".terraform.lock.hcl"
    for filename, name, version in _pinned_versions(parsed_files, lock.read_text() if lock.is_file() else None):
        if name in schemas and version != schemas[name]["version"]:
            findings.append(f"{filename}: provider {name} pinned to \"{version}\", but the schema checked is "
                            f"{schemas[name]['version']} ({schemas[name]['package']}): pin the same version")

    for filename, parsed in parsed_files.items():
        for kind, schema_key, meta in (("resource", "resource", _META), ("data", "data", _META),
                                       ("ephemeral", "data", _META)):
            for (type_, name), body in _labelled(parsed.get(kind, []), 2):
                where = f"{filename}: {kind} {type_}.{name}"
                if type_ in _BUILTIN_RESOURCES:
                    continue
                provider = schemas.get(_provider_of(type_))
                if provider is None:
                    findings.append(f"{where}: no schema for provider \"{_provider_of(type_)}\" "
                                    f"(add it to infra/provider_schema.py)")
                    continue
                if type_ not in provider[schema_key]:
                    findings.append(f"{where}: provider {provider['version']} has no {schema_key} \"{type_}\"")
                    continue
                findings.extend(check_body(body, provider[schema_key][type_], where, meta))
        for (name,), body in _labelled(parsed.get("provider", []), 1):
            where = f"{filename}: provider {name}"
            if name not in schemas:
                findings.append(f"{where}: no schema for provider \"{name}\"")
                continue
            findings.extend(check_body(body, schemas[name]["provider_config"], where, {"alias"}))
    return findings


def load_schemas(directory: pathlib.Path) -> dict[str, dict]:
    schemas = {}
    for path in sorted(directory.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        schemas[path.name.split("-", 1)[0]] = schema
    return schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", type=pathlib.Path, required=True, help="folder of provider_schema.py's JSON")
    parser.add_argument("--dir", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    schemas = load_schemas(args.schemas)
    if not schemas:
        print(f"schema check: no schema in {args.schemas}", file=sys.stderr)
        return 2
    findings = check_folder(args.dir, schemas)
    for finding in findings:
        print(finding, file=sys.stderr)
    described = ", ".join(f"{n} {s['version']} ({s['package']})" for n, s in sorted(schemas.items()))
    if findings:
        print(f"schema check: {len(findings)} finding(s) against {described}", file=sys.stderr)
        return 1
    print(f"schema check: ok against {described}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
