"""Read infra/*.tf with python-hcl2 into plain Python values, for tests that compare the Terraform with the code.

python-hcl2 keeps string quotes, wraps interpolations as "${...}" and marks blocks with "__is_block__"; this module
removes the quotes and markers so a test reads `tf.resource("google_pubsub_topic", "topic")["name"]` as the text
written in the .tf file ("${each.key}"), and renders simple for_each templates with `render()`.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import hcl2

REPO = pathlib.Path(__file__).resolve().parents[3]
INFRA = REPO / "infra"

_BLOCK_MARKERS = ("__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\")
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if k not in _BLOCK_MARKERS}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _load(path: pathlib.Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return _clean(hcl2.load(handle))


def block(value: Any) -> dict[str, Any]:
    """A nested block (`build_config { ... }`) as a dict: python-hcl2 gives a one-element list."""
    if isinstance(value, list):
        assert len(value) == 1, f"expected one block, got {len(value)}"
        value = value[0]
    assert isinstance(value, dict), f"expected a block, got {value!r}"
    return value


def reference(value: str) -> str:
    """`${local.routes}` -> `local.routes`."""
    match = re.fullmatch(r"\$\{(.*)\}", value.strip(), flags=re.S)
    assert match, f"{value!r} is not a single interpolation"
    return match.group(1).strip()


def render(template: str, key: str, values: dict[str, Any] | None = None,
           variables: dict[str, Any] | None = None) -> str:
    """Substitute ${each.key}, ${each.value.X} and ${var.X} in a string template; fail on anything else."""
    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr == "each.key":
            return key
        if expr.startswith("each.value.") and values is not None:
            return str(values[expr.removeprefix("each.value.")])
        if expr.startswith("var.") and variables is not None:
            return str(variables[expr.removeprefix("var.")])
        raise AssertionError(f"cannot render ${{{expr}}} in {template!r}")

    return re.sub(r"\$\{([^}]*)\}", substitute, template)


@dataclasses.dataclass
class Terraform:
    locals: dict[str, Any]
    resources: dict[tuple[str, str], dict[str, Any]]
    data: dict[tuple[str, str], dict[str, Any]]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    terraform: list[dict[str, Any]]

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        assert (type_, name) in self.resources, f"infra/ declares no {type_}.{name}"
        return self.resources[(type_, name)]

    def resources_of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == type_}

    def variable_default(self, name: str) -> Any:
        return self.variables[name].get("default")


def load_infra(folder: pathlib.Path = INFRA) -> Terraform:
    tf = Terraform(locals={}, resources={}, data={}, variables={}, outputs={}, terraform=[])
    for path in sorted(folder.glob("*.tf")):
        parsed = _load(path)
        for local_block in parsed.get("locals", []):
            for name, value in local_block.items():
                assert name not in tf.locals, f"local.{name} declared twice"
                tf.locals[name] = value
        for kind, target in (("resource", tf.resources), ("data", tf.data)):
            for entry in parsed.get(kind, []):
                for type_, by_name in entry.items():
                    for name, body in by_name.items():
                        assert (type_, name) not in target, f"{kind} {type_}.{name} declared twice"
                        target[(type_, name)] = body
        for entry in parsed.get("variable", []):
            tf.variables.update(entry)
        for entry in parsed.get("output", []):
            tf.outputs.update(entry)
        tf.terraform.extend(parsed.get("terraform", []))
    return tf


def load_build_bundles():
    """infra/build_bundles.py as a module (infra/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_bundles", INFRA / "build_bundles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def string_list(value: Any) -> list[str]:
    """The strings of a list literal, also when wrapped in a function call such as `toset([...])`."""
    if isinstance(value, list):
        return [str(v) for v in value]
    match = re.fullmatch(r"\$\{\w+\(\[(.*)\]\)\}", value.strip(), flags=re.S)
    assert match, f"{value!r} is not a list literal"
    return re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1))


def load_cloudbuild(path: pathlib.Path = REPO / "cloudbuild.yaml") -> dict[str, Any]:
    """cloudbuild.yaml as data. No YAML parser is in requirements-dev.txt, but the Google Cloud SDK that the tests
    need anyway (its emulators) ships ruamel.yaml in lib/third_party: a child process parses with it, so the SDK's
    vendored packages never mix with this venv's."""
    import json
    import os
    import subprocess
    import sys

    third_party = pathlib.Path(os.environ.get("GCLOUD_SDK_ROOT", "/usr/lib/google-cloud-sdk")) / "lib" / "third_party"
    assert (third_party / "ruamel" / "yaml").is_dir(), f"no ruamel.yaml in {third_party} (set GCLOUD_SDK_ROOT)"
    result = subprocess.run(
        [sys.executable, "-c", "import json, sys\nfrom ruamel.yaml import YAML\n"
                               "print(json.dumps(YAML(typ='safe').load(open(sys.argv[1], encoding='utf-8'))))",
         str(path)], env={**os.environ, "PYTHONPATH": str(third_party)}, capture_output=True, text=True,
        check=True, timeout=60)
    return json.loads(result.stdout)


def _top_level_split(text: str, separator: str) -> list[str]:
    """`text` split at each `separator` outside brackets and string literals."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def evaluate(value: Any, variables: dict[str, Any], locals_: dict[str, Any] | None = None) -> Any:
    """The value of a small Terraform expression for the given variable values, as `terraform plan` would compute it
    (terraform itself cannot plan offline): literals, `var.X`, `COND ? A : B`, `tostring(...)`, `toset([...])`,
    `null`, and `local.X` when `locals_` is given. Anything else (a reference to a resource) comes back as its text,
    such as "google_vpc_access_connector.egress[0].id", for the test to compare."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\$\{(.*)\}", value.strip(), flags=re.S)
    return _evaluate_expression(match.group(1).strip(), variables, locals_ or {}) if match else value


def _evaluate_expression(text: str, variables: dict[str, Any], locals_: dict[str, Any]) -> Any:
    condition, *branches = _top_level_split(text, " ? ")
    if branches:
        true_branch, false_branch = _top_level_split(" ? ".join(branches), " : ")
        chosen = _evaluate_expression(condition, variables, locals_)
        assert isinstance(chosen, bool), f"the condition of {text!r} is {chosen!r}, not a bool"
        return _evaluate_expression(true_branch if chosen else false_branch, variables, locals_)
    if text in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[text]
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text) if "." in text else int(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return _unquote(text)
    if re.fullmatch(r"var\.\w+", text):
        return variables[text.removeprefix("var.")]
    if re.fullmatch(r"local\.\w+", text) and text.removeprefix("local.") in locals_:
        return evaluate(locals_[text.removeprefix("local.")], variables, locals_)
    call = re.fullmatch(r"(tostring|toset)\((.*)\)", text, flags=re.S)
    if call:
        inner = _evaluate_expression(call.group(2).strip(), variables, locals_)
        if call.group(1) == "toset":
            return set(inner)
        return str(inner).lower() if isinstance(inner, bool) else str(inner)
    if text.startswith("[") and text.endswith("]"):
        items = [item for item in _top_level_split(text[1:-1], ",") if item]
        return [_evaluate_expression(item, variables, locals_) for item in items]
    return text
