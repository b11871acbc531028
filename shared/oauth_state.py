"""The OAuth `state` of the auth function: single-use, expiring, and bound to the browser that started the flow.

`issue()` creates `<prefix>_oauth_states/<state>` with `expire_at` (Firestore's TTL policy deletes it later),
`used: false` and `browser_sha256`, the SHA-256 of a random value that only the operator's browser gets, in an
HttpOnly cookie (docs/decisions/007). Only the hash is stored, so reading Firestore does not let anyone forge it.

`consume()` is what the callback does before anything else. A state shows up in URLs (Bling's redirect, browser
history, a shared screen), so knowing it proves nothing: the callback must also carry the cookie. Everything that
can be checked by reading is checked before writing, and a refused callback writes nothing, so a stranger who
replays a seen state with their own code neither reaches the token endpoint nor burns the operator's state.

Bling revokes the user when a code is exchanged twice (API-NOTES §4.17), so an accepted callback consumes the
state and records the code in ONE atomic commit (state marked used + `<prefix>_oauth_codes/<sha256(code)>`
created; it fails as a whole if either was already there); only then may the caller call the token endpoint.

The state also carries the account it authorizes (issue 14): the pair a callback obtains is stored for the
account saved with the state at /start, never for one named in the callback's URL, which anyone can edit.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
import secrets
from typing import Any

from shared import topology
from shared.accounts import parse_account_id

COOKIE_NAME = "bling_auth_flow"
NOT_THIS_BROWSER = "not started in this browser"
_UTC = datetime.UTC
_STATE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_COOKIE_MAX_CHARS = 128


@dataclasses.dataclass(frozen=True)
class Consumed:
    """What consume() decided: `refusal` "" (accepted) or why not; `account`: the slug the state was issued for
    (set when accepted)."""
    refusal: str
    account: str = ""


def issue(states: Any, ttl_s: int, account: str) -> tuple[str, str]:
    """A new state for `account` (a slug) and the browser secret to set as the COOKIE_NAME cookie; the state is
    saved for ttl_s seconds in `states` (the collection topology.OAUTH_STATES)."""
    parse_account_id(account)
    state, browser_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = datetime.datetime.now(tz=_UTC)
    states.document(state).create({
        "created_at": now, "expire_at": now + datetime.timedelta(seconds=ttl_s), "used": False,
        "browser_sha256": _sha256(browser_secret), "account": account,
    })
    return state, browser_secret


def consume(firestore: Any, states: Any, codes: Any, state: str, code: str, browser_secret: str) -> Consumed:
    """Accepted (refusal "") when the state is live, unused and was issued to this browser, and is now consumed
    with the code recorded; otherwise why not (and nothing was written). `firestore`: the client; `states`,
    `codes`: the collections topology.OAUTH_STATES and OAUTH_CODES."""
    from google.api_core import exceptions as gexc

    if not _STATE_PATTERN.match(state):
        return Consumed("unknown state")
    ref = states.document(state)
    snap = ref.get()
    if not snap.exists:
        return Consumed("unknown state")
    data = snap.to_dict() or {}
    if data.get("used"):
        return Consumed("state already used")
    expire_at = data.get("expire_at")
    now = datetime.datetime.now(tz=_UTC)
    if not isinstance(expire_at, datetime.datetime) or expire_at <= now:
        return Consumed("state expired")
    expected = data.get("browser_sha256")
    if (not browser_secret or len(browser_secret) > _COOKIE_MAX_CHARS or not isinstance(expected, str)
            or not hmac.compare_digest(_sha256(browser_secret), expected)):
        return Consumed(NOT_THIS_BROWSER)
    try:
        account = parse_account_id(data.get("account"))
    except ValueError:  # a state issued before accounts existed, or a hand-edited one: store the pair for nobody
        return Consumed("state names no valid account")
    code_id = _sha256(code)
    batch = firestore.batch()
    batch.update(ref, {"used": True, "used_at": now, "code_sha256": code_id},
                 option=firestore.write_option(last_update_time=snap.update_time))
    batch.create(codes.document(code_id), {"state_used_at": now, "expire_at": topology.OAUTH_CODES.expire_at(now)})
    try:
        batch.commit()
    except (gexc.FailedPrecondition, gexc.Conflict, gexc.AlreadyExists):
        return Consumed("state or code already used")
    return Consumed("", account)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()

