"""Every `gcloud ...` command line in docs/RUNBOOK.md and README.md exists in the installed Google Cloud CLI with the
flags it is given: each command group is walked with `gcloud <group> --help` and each flag looked up in the
command's own help (its flags, plus the gcloud-wide ones), offline.

Help texts are cached per SDK version in build/gcloud-help/. The first run fetches the missing ones in one
interpreter that loads the CLI once and walks every command line (gcloud_help_batch.py --walk), instead of a gcloud
process (~0.7 s) per help text; what that left missing is fetched depth by depth, and a path no batch could answer
is asked of a `gcloud ... --help` process as before.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gcloud_help_text import children, command_words, plain
from infra_hcl import REPO

_DOCS = ("docs/RUNBOOK.md", "README.md")
_OPERATORS = {"|", "||", "&&", ";", "&", "(", ")", ";;"}
_BATCH = Path(__file__).resolve().parent / "gcloud_help_batch.py"

pytestmark = pytest.mark.skipif(shutil.which("gcloud") is None and os.environ.get("CI") != "true",
                                reason="the Google Cloud CLI is not installed")


def _code_spans(markdown: str) -> list[str]:
    """Fenced blocks and inline code, with backslash-continued lines joined."""
    fence = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"  # also indented, inside a list item
    fenced = re.findall(fence, markdown, flags=re.S | re.M)
    outside = re.sub(fence, "", markdown, flags=re.S | re.M)
    inline = re.findall(r"`([^`\n]+)`", outside)
    return [re.sub(r"\\\n\s*", " ", block) for block in fenced + inline]


def _without_substitutions(line: str) -> tuple[str, list[str]]:
    """The line with each $( ... ) replaced by a word, and the substituted commands."""
    inner, out, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2:j - 1])
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def gcloud_commands(markdown: str) -> list[list[str]]:
    commands = []
    pending = [line for span in _code_spans(markdown) for line in span.splitlines()]
    while pending:
        line, inner = _without_substitutions(pending.pop(0).split(" #")[0])
        pending.extend(inner)
        if "gcloud" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in _OPERATORS:
                if len(current) > 1 and current[0] == "gcloud":  # a bare `gcloud` is a mention
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


class GcloudHelp:
    """`gcloud <path> --help`, cached on disk per SDK version."""

    def __init__(self, cache_root):
        version = subprocess.run(["gcloud", "version", "--format=value(\"Google Cloud SDK\")"],
                                 capture_output=True, text=True, timeout=120, env=self._env()).stdout.strip()
        self.cache = cache_root / (version or "unknown")
        self.cache.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _env():
        return {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "TERM": "dumb"}

    def _cached(self, path: tuple[str, ...]) -> Path:
        return self.cache / ("_".join(path) or "gcloud")

    def prefetch(self, commands: list[list[str]]) -> None:
        """Fill the cache with every help text problems_of(command) will read: walk each command on the cache
        alone, collect the paths it misses at this depth, fetch them in one batch, and again until none is missing."""
        sdk_lib = Path(os.path.realpath(shutil.which("gcloud") or "gcloud")).parent.parent / "lib"
        if not (sdk_lib / "gcloud.py").is_file():
            return  # not a standard SDK layout: text() asks gcloud one path at a time
        walks = [json.dumps(command_words(c)) for c in commands if self._first_missing(c) is not None]
        if walks:
            self._fetch_batch(sdk_lib, ["--walk", *walks])
        for _depth in range(12):
            missing = {path for path in map(self._first_missing, commands) if path is not None}
            if not missing:
                return
            if not self._fetch_batch(sdk_lib, ["/".join(p) for p in sorted(missing)]):
                return

    def _first_missing(self, command: list[str]) -> tuple[str, ...] | None:
        """The first help text problems_of(command) would read that is not cached yet (None: all are)."""
        try:
            problems_of(command, _CacheOnly(self))
        except _NotCached as exc:
            return exc.path
        return None

    def _fetch_batch(self, sdk_lib: Path, args: list[str]) -> bool:
        """Run gcloud_help_batch.py with args and cache every help text it rendered."""
        out = self.cache / f".batch-{os.getpid()}.json"
        python = os.environ.get("CLOUDSDK_PYTHON") or shutil.which("python3") or sys.executable
        result = subprocess.run([python, str(_BATCH), str(sdk_lib), str(out), *args],
                                capture_output=True, text=True, timeout=300, env=self._env())
        if result.returncode != 0 or not out.is_file():
            return False
        texts = json.loads(out.read_text(encoding="utf-8"))
        out.unlink()
        for path, text in texts.items():
            self._cached(tuple(path.split("/")) if path else ()).write_text(plain(text), encoding="utf-8")
        return True

    def text(self, path: tuple[str, ...]) -> str | None:
        cached = self._cached(path)
        if cached.is_file():
            return cached.read_text(encoding="utf-8") or None
        result = subprocess.run(["gcloud", *path, "--help"], capture_output=True, text=True, timeout=120,
                                env=self._env())
        text = plain(result.stdout) if result.returncode == 0 else ""
        cached.write_text(text, encoding="utf-8")
        return text or None


class _NotCached(Exception):
    def __init__(self, path: tuple[str, ...]):
        super().__init__(path)
        self.path = path


class _CacheOnly:
    """A GcloudHelp that answers from the cache only and raises _NotCached for the first path it lacks."""

    def __init__(self, gcloud: GcloudHelp):
        self.gcloud = gcloud

    def text(self, path: tuple[str, ...]) -> str | None:
        cached = self.gcloud._cached(path)
        if not cached.is_file():
            raise _NotCached(path)
        return cached.read_text(encoding="utf-8") or None


def problems_of(command: list[str], gcloud: GcloudHelp) -> list[str]:
    words = command_words(command)
    path: tuple[str, ...] = ()
    text = gcloud.text(path)
    for word in words:
        names = children(text)
        if not names:
            break  # a command: the remaining words are its positional arguments
        if word not in names:
            return [f"`gcloud {' '.join(path)}` has no group or command {word!r}"]
        path += (word,)
        text = gcloud.text(path)
        if text is None:
            return [f"`gcloud {' '.join(path)} --help` fails"]
    if children(text):
        return [f"`gcloud {' '.join(path)}` is a group, not a command"]
    known = set(re.findall(r"--(?:\[no-\])?([a-z0-9][a-z0-9-]*)", text))
    problems = []
    for token in command[1:]:
        if token.startswith("--"):
            flag = token[2:].split("=", 1)[0]
            if flag not in known and not (flag.startswith("no-") and f"[no-]{flag[3:]}" in text):
                problems.append(f"`gcloud {' '.join(path)}` has no flag --{flag}")
    return problems


@pytest.fixture(scope="module")
def gcloud():
    return GcloudHelp(REPO / "build" / "gcloud-help")


def test_the_documents_contain_the_commands_a_deployment_needs():
    commands = {" ".join(c[:4]) for doc in _DOCS for c in gcloud_commands((REPO / doc).read_text(encoding="utf-8"))}

    assert len(commands) >= 10
    assert any(c.startswith("gcloud builds submit") for c in commands)
    assert any(c.startswith("gcloud secrets versions add") for c in commands)


@pytest.mark.parametrize("doc", _DOCS)
def test_every_gcloud_command_line_is_accepted_by_the_installed_cli(doc, gcloud):
    commands = gcloud_commands((REPO / doc).read_text(encoding="utf-8"))
    gcloud.prefetch(commands)

    problems = [f"{' '.join(c)}\n    -> {p}" for c in commands for p in problems_of(c, gcloud)]

    assert not problems, "\n".join(problems)


def test_a_misspelt_flag_or_group_is_caught(gcloud):
    text = """```bash
gcloud scheduler jobs run bling-daily --locaton="$REGION"
gcloud pubsub topic publish bling-schedule --message='{"month":"2021-03"}'
```
and inline `gcloud logging read 'severity>=ERROR' --freshnes=1d --limit=5`.
"""
    commands = gcloud_commands(text)
    gcloud.prefetch(commands)

    found = [p for c in commands for p in problems_of(c, gcloud)]

    assert found == ["`gcloud scheduler jobs run` has no flag --locaton",
                     "`gcloud pubsub` has no group or command 'topic'",
                     "`gcloud logging read` has no flag --freshnes"]


def test_commands_inside_substitutions_and_pipes_are_checked(gcloud):
    text = """```bash
printf '%s' x | gcloud secrets versions add bling-client-id --data-fil=-
gcloud sql users set-password bling_etl --instance=bling-pg \\
  --password="$(gcloud secrets versions access latest --secrt=bling-db-password)"
```"""
    commands = gcloud_commands(text)
    gcloud.prefetch(commands)
    found = [p for c in commands for p in problems_of(c, gcloud)]

    assert sorted(found) == ["`gcloud secrets versions access` has no flag --secrt",
                             "`gcloud secrets versions add` has no flag --data-fil"]
