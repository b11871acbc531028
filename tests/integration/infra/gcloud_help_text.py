"""How the runbook check reads a `gcloud ... --help` text, shared by the test (test_runbook_gcloud.py) and the batch
that renders the texts (gcloud_help_batch.py, run by gcloud's own interpreter: the standard library only)."""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(help_text: str) -> str:
    """The help text without its terminal colours (names under GROUPS and COMMANDS come out bold)."""
    return _ANSI.sub("", help_text)


def children(help_text: str) -> set[str]:
    """Names listed under GROUPS and COMMANDS of a group's help."""
    names = set()
    for section in re.findall(r"^(?:GROUPS|COMMANDS)\n(.*?)(?=^\S|\Z)", help_text, flags=re.S | re.M):
        names |= set(re.findall(r"^     ([a-z][a-z0-9-]*)$", section, flags=re.M))
    return names


def command_words(command: list[str]) -> list[str]:
    """The words of `gcloud ...` that may name groups and a command (flags are looked up in the command's help)."""
    return [t for t in command[1:] if not t.startswith("-")]
