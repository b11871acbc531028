"""Commands for operators: accounts, reconciliation against Bling, dead-letter replay, parked work."""
from __future__ import annotations

import argparse

from shared.accounts import parse_account_id


def account_arg(value: str) -> str:
    """argparse `type=` for an account slug: the slug rule's own message on a bad one."""
    try:
        return parse_account_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
