"""The Bling OAuth token pair in Firestore, refreshed by one instance at a time (docs/decisions/003).

Document `<prefix>_oauth/<account>` (one per Bling account; a single-account install before issue 14 had
`<prefix>_oauth/bling`, adopted by shared.account_upgrade): access_token, refresh_token (AES-256-GCM ciphertext,
shared.bling.token_crypto; JWTs are 1.5-3 kB), expires_at, version (int, bumped on every new pair and nothing else),
lease_holder, lease_until, last_refresh_at, authorized_at, reauth_required, last_error, last_error_at, and the
fleet-wide guards of docs/decisions/008: authorization_broken (+ _reason, _fingerprint, _at), token_failures,
token_backoff_until.

Refresh tokens are single-use, so a refresh is serialized across every instance of every function:
1. Take a lease with one compare-and-set write: the document is read, and the lease is written only if no live
   lease is there AND the document has not changed since that read (Firestore precondition on update_time).
   The refresh token used is the one in that same read, so a process that takes over an expired lease always
   sees a pair its dead predecessor managed to write.
2. Call the token endpoint once, outside any transaction or retry loop (a re-run would spend the token twice).
3. Write the new pair with another compare-and-set, only if `version` is still the one read in step 1 (the
   fence: a late writer can never overwrite a newer pair); bump version, clear the lease, before anything uses it.
Instances without the lease poll, with backoff and a deadline, until version changes.
On invalid_grant the document is read again: if the refresh token changed, a sibling won and its token is used;
only if it is still the refused one is `reauth_required` set (by one compare-and-set: one ERROR line in the
whole fleet), and nothing calls the token endpoint again until the auth function stores a new authorization.

Failure paths (docs/decisions/008): a token-endpoint 4xx other than invalid_grant, or an API 401/403 that refuses
the authorization itself, sets `authorization_broken` once for the fleet and parks the work; a transient failure
sets `token_backoff_until` so no instance calls again before it; every call takes a slot of the fleet-wide meter
(shared.bling.token_meter); the call has a total deadline of a third of the lease, and a late answer is still
written; the new pair's write is retried until its own deadline; the lease is released in `finally`.

Why compare-and-set instead of transactions: a Firestore transaction is exactly this read-check-write on one
document, but the emulator serializes concurrent transactions with lock timeouts (10 contending instances: one
commit, nine failures after 10 s); the precondition write gives the same atomicity without waiting on locks.
"""
from __future__ import annotations

import datetime
import os
import random
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import firestore_client, log, topology
from shared.bling import oauth, token_crypto, token_meter
from shared.bling.errors import BlingAuthorizationBroken, BlingError, BlingReauthorizationRequired, BlingRetryableError
from shared.config import Settings

# The token document of a single-account install before issue 14 (shared.account_upgrade moves it to the account's).
LEGACY_DOC_ID = "bling"
_UTC = datetime.UTC
# Compare-and-set attempts before giving up (each failure means another instance wrote in between).
_CAS_ATTEMPTS = 8
# A token that still has this much validity is used when a refresh fails for a transient reason.
_STILL_USABLE_S = 60.0


_TOKEN_FIELDS = ("access_token", "refresh_token")
# Errors raised before any request reached the token endpoint: they say nothing about Bling, so they neither
# overwrite last_error (what /status shows) nor start the fleet's backoff.
_LOCAL_REFUSALS = ("token_call_guard", "token_fleet_cap")


def _context(prefix: str, doc_id: str, field: str) -> str:
    """Associated data of a token field's ciphertext: its collection, document and field (so a ciphertext copied
    into another account's document does not decrypt there)."""
    return f"{prefix}_oauth/{doc_id}#{field}"


def decrypted_tokens(data: dict[str, Any], key_text: str, prefix: str, doc_id: str) -> dict[str, str]:
    """{access_token, refresh_token} of a token document's fields, decrypted (plain text from before passes);
    key_text as in token_crypto.decrypt, prefix = Settings.firestore_prefix, doc_id = the account (or
    LEGACY_DOC_ID)."""
    return {name: token_crypto.decrypt(data.get(name) or "", _context(prefix, doc_id, name), key_text)
            for name in _TOKEN_FIELDS}


def encrypted_tokens(plain: dict[str, str], key_text: str, prefix: str, doc_id: str) -> dict[str, str]:
    """The inverse of decrypted_tokens: the stored form of {access_token, refresh_token} in document doc_id."""
    return {name: token_crypto.encrypt(plain[name], _context(prefix, doc_id, name), key_text)
            for name in _TOKEN_FIELDS}


@dataclass(frozen=True)
class _Doc:
    """One read of the token document; the token fields are decrypted when first used (status() never does)."""
    exists: bool
    data: dict[str, Any]
    update_time: Any
    settings: Settings = field(compare=False, repr=False)
    doc_id: str = field(compare=False)
    _plain: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def _token(self, name: str) -> str:
        if name not in self._plain:
            self._plain[name] = token_crypto.decrypt(self.data.get(name) or "",
                                                     _context(self.settings.firestore_prefix, self.doc_id, name),
                                                     self.settings.bling_token_key)
        return self._plain[name]

    @property
    def access_token(self) -> str:
        return self._token("access_token")

    @property
    def refresh_token(self) -> str:
        return self._token("refresh_token")

    @property
    def has_pair(self) -> bool:
        return bool(self.data.get("refresh_token"))

    @property
    def version(self) -> int:
        return int(self.data.get("version") or 0)

    @property
    def expires_at(self) -> float:
        return _epoch(self.data.get("expires_at"))

    @property
    def backoff_until(self) -> float:
        return _epoch(self.data.get("token_backoff_until"))

    @property
    def reauth_required(self) -> bool:
        return bool(self.data.get("reauth_required"))

    @property
    def authorization_broken(self) -> bool:
        return bool(self.data.get("authorization_broken"))

    def lease_live(self, now: float) -> bool:
        return bool(self.data.get("lease_holder")) and _epoch(self.data.get("lease_until")) > now


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime.datetime) else 0.0


def _ts(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz=_UTC)


def _iso(value: Any) -> str | None:
    return value.astimezone(_UTC).isoformat() if isinstance(value, datetime.datetime) else None


class TokenStore:
    """One account's token document (`<prefix>_oauth/<account>`): its pair, refresh lease, flags and backoff are
    that account's; the token meter (shared.bling.token_meter) stays fleet-wide, it is the IP's rule. `firestore`
    and `endpoint`: the process's Firestore client and token-endpoint client (shared.deps.Deps); `on_restored`:
    what to do when a valid pair clears a flag (Deps passes the release of the account's parked work)."""

    def __init__(self, firestore: Any, settings: Settings, endpoint: oauth.OAuthClient, account: str,
                 on_restored: Callable[[], object] = lambda: None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.account = account
        self._firestore = firestore
        self._settings = settings
        self._endpoint = endpoint
        self._on_restored = on_restored
        self._missing_logged = False  # "no authorization stored" is logged once per store, not per call
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # threads of one process refresh one at a time (no Firestore polling)
        self._cached: tuple[str, float] | None = None  # (access_token, expires_at)

    # ------------------------------------------------------------------------------------------------ public API

    def get_valid_access_token(self) -> str:
        """An access token valid for more than BLING_TOKEN_REFRESH_MARGIN_S, refreshing it first if needed."""
        margin = self._settings.token_refresh_margin_s
        cached = self._cached
        if cached and cached[1] - self._clock() > margin:
            return cached[0]
        with self._lock:
            doc = self._read()
            if self._may_try_despite_flag(doc):
                return self._refresh(doc, reason="credentials_changed")
            if doc.expires_at - self._clock() > margin:
                return self._use(doc)
            return self._refresh(doc, reason="expiring")

    def refresh_after_rejection(self, rejected_access_token: str) -> str:
        """Bling answered 401 invalid_token to this token: refresh, unless the store already holds a newer one."""
        with self._lock:
            self._cached = None
            doc = self._read()
            if self._may_try_despite_flag(doc):
                return self._refresh(doc, reason="credentials_changed")
            if doc.access_token != rejected_access_token and doc.expires_at > self._clock():
                return self._use(doc)
            return self._refresh(doc, reason="rejected")

    def mark_authorization_broken(self, rejected_access_token: str, error: BlingError) -> None:
        """Bling's API refused the authorization itself (401 other than invalid_token, 403 insufficient_scope):
        flag the fleet once, so nobody calls Bling until a new authorization; always raises."""
        with self._lock:
            self._cached = None
        for _ in range(_CAS_ATTEMPTS):
            doc = self._read()
            if doc.authorization_broken:
                raise self._broken_error(doc)
            if doc.access_token != rejected_access_token:
                # The pair changed since our request: the refusal may not hold for the new token.
                raise error.as_kind(BlingRetryableError, "the token was replaced meanwhile; retry with the new one")
            reason = _what_to_fix(error, self._start_url(), token_endpoint=False)
            if self._cas(doc, self._broken_fields(error, reason, fingerprint=None)):
                _log_broken(reason, error, self._start_url())
                raise error.as_kind(BlingAuthorizationBroken, reason)
        raise BlingRetryableError(0, "token_store_contention", "could not record the refused authorization",
                                  "the token document kept changing", path=error.path)

    def store_authorization(self, token_response: dict[str, Any], requested_at: float | None = None) -> None:
        """Save the pair from a code exchange (auth callback): a new version, every flag cleared."""
        token = oauth.parse_token_response(token_response)
        now = self._clock()
        fields = self._pair_fields(token, requested_at or now)
        fields.update(authorized_at=_ts(now), scope=token["scope"])
        from google.api_core import exceptions as gexc

        ref = self._ref()
        for _ in range(_CAS_ATTEMPTS):
            doc = self._read()
            fields["version"] = doc.version + 1
            try:
                if doc.exists:
                    self._update(ref, fields, self._firestore.write_option(
                        last_update_time=doc.update_time))
                else:
                    ref.create(fields)
            except (gexc.FailedPrecondition, gexc.Conflict, gexc.AlreadyExists):
                continue
            with self._lock:
                self._cached = None
            log.info("stored a new Bling authorization", event="bling_authorization_stored",
                     token_version=fields["version"], token_expires_at=fields["expires_at"].isoformat())
            return
        raise BlingRetryableError(0, "token_store_contention", "could not store the authorization",
                                  "the token document kept changing; try again")

    def status(self) -> dict[str, Any]:
        """What a human needs to know about the stored authorization; never a token (nothing is decrypted)."""
        doc = self._read()
        now = self._clock()
        stored = doc.has_pair
        result = {
            "token_stored": stored,
            "expires_at": _iso(doc.data.get("expires_at")),
            "expires_in_s": max(0, int(doc.expires_at - now)) if stored else 0,
            "reauth_required": doc.reauth_required or not stored,
            "authorization_broken": doc.authorization_broken,
            "last_refresh_at": _iso(doc.data.get("last_refresh_at")),
            "authorized_at": _iso(doc.data.get("authorized_at")),
            "version": doc.version,
            "refresh_in_progress": doc.lease_live(now),
            "last_error": doc.data.get("last_error"),
            "last_error_at": _iso(doc.data.get("last_error_at")),
            "token_backoff_until": _iso(doc.data.get("token_backoff_until")) if doc.backoff_until > now else None,
        }
        if doc.authorization_broken:
            result["action_required"] = doc.data.get("authorization_broken_reason")
        if result["reauth_required"] or doc.authorization_broken:
            result["reauthorize_url"] = self._start_url()
        return result

    # ------------------------------------------------------------------------------------------------ internals

    def _start_url(self) -> str:
        """The auth function's start page for this account (what an operator opens to re-authorize it)."""
        query = urllib.parse.urlencode({"account": self.account})
        return f"{self._settings.auth_public_url.rstrip('/')}/start?{query}"

    def _log_missing_authorization_once(self) -> None:
        if not self._missing_logged:
            self._missing_logged = True
            log.error(f"no Bling authorization is stored: open {self._start_url()} and approve the app",
                      event="bling_not_authorized", reauthorize_url=self._start_url())

    def _ref(self) -> Any:
        return firestore_client.collection_in(self._firestore, self._settings.firestore_prefix,
                                           topology.OAUTH).document(self.account)

    def _read(self) -> _Doc:
        snap = self._ref().get()
        data = (snap.to_dict() or {}) if snap.exists else {}
        return _Doc(snap.exists, data, snap.update_time if snap.exists else None, self._settings, self.account)

    def _update(self, ref: Any, fields: dict[str, Any], option: Any) -> None:
        """The one write of the token document (a seam: tests make it fail like Firestore can)."""
        ref.update(fields, option=option)

    def _cas(self, doc: _Doc, fields: dict[str, Any]) -> bool:
        """Write fields only if the document is still exactly as read in `doc`."""
        from google.api_core import exceptions as gexc

        try:
            self._update(self._ref(), fields, self._firestore.write_option(
                last_update_time=doc.update_time))
            return True
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False

    def _use(self, doc: _Doc) -> str:
        self._cached = (doc.access_token, doc.expires_at)
        return doc.access_token

    def _may_try_despite_flag(self, doc: _Doc) -> bool:
        """Raise when the store cannot be used; True when it is flagged broken but our credentials are not the
        ones it failed with (a new secret was deployed): this process may try one refresh to prove them."""
        if not doc.has_pair:
            self._log_missing_authorization_once()
            raise BlingReauthorizationRequired(401, "not_authorized", "no Bling authorization stored",
                                               f"open {self._start_url()} to authorize", path="/oauth/token")
        if doc.reauth_required:
            raise BlingReauthorizationRequired(401, "reauth_required", "Bling re-authorization required",
                                               f"the refresh token was refused; open {self._start_url()}",
                                               path="/oauth/token")
        if doc.authorization_broken:
            failed_with = doc.data.get("authorization_broken_fingerprint")
            if failed_with and failed_with != self._endpoint.credentials_fingerprint():
                return True
            raise self._broken_error(doc)
        return False

    def _broken_error(self, doc: _Doc) -> BlingAuthorizationBroken:
        return BlingAuthorizationBroken(0, "authorization_broken", "Bling authorization or configuration broken",
                                        str(doc.data.get("authorization_broken_reason") or ""),
                                        path="/oauth/token")

    def _pair_fields(self, token: dict[str, Any], requested_at: float) -> dict[str, Any]:
        now = self._clock()
        return {**encrypted_tokens(token, self._settings.bling_token_key, self._settings.firestore_prefix,
                                   self.account),
                "expires_at": _ts(requested_at + token["expires_in"]), "last_refresh_at": _ts(now),
                "lease_holder": None, "lease_until": None, "reauth_required": False, "last_error": None,
                "last_error_at": None, "authorization_broken": False, "authorization_broken_reason": None,
                "authorization_broken_fingerprint": None, "token_failures": 0, "token_backoff_until": None}

    def _refresh(self, doc: _Doc, reason: str) -> str:
        """Get a newer pair than the one in `doc`: refresh it ourselves under the lease, or wait for whoever does."""
        settings = self._settings
        seen_version = doc.version
        _ = doc.refresh_token  # decrypt now: a missing or wrong key fails before any lease is taken
        deadline = time.monotonic() + settings.token_lease_s + settings.token_http_timeout_s
        pause = 0.1
        first = True
        while True:
            if not first:
                doc = self._read()
                if not self._may_try_despite_flag(doc) and reason == "credentials_changed":
                    reason = "expiring"  # someone else cleared the flag meanwhile
            first = False
            if doc.version != seen_version:  # another instance refreshed while we looked
                return self._use(doc)
            now = self._clock()
            if doc.lease_live(now):
                if time.monotonic() > deadline:
                    raise BlingRetryableError(0, "token_refresh_wait", "token refresh still in progress",
                                              "another instance holds the refresh lease; try again later",
                                              path="/oauth/token")
                self._sleep(pause * random.uniform(1.0, 1.5))
                pause = min(pause * 2, 2.0)
                continue
            if doc.backoff_until > now:
                return self._while_backing_off(doc, reason)
            takeover = bool(doc.data.get("lease_holder"))  # an expired lease: its holder may still be writing
            holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            if not self._cas(doc, {"lease_holder": holder, "lease_until": _ts(now + settings.token_lease_s)}):
                continue  # the document changed since our read: look again
            log.info("took the Bling token refresh lease", event="bling_token_lease", reason=reason,
                     lease_holder=holder, token_version=seen_version, takeover=takeover)
            return self._refresh_under_lease(doc, holder, reason, takeover)

    def _while_backing_off(self, doc: _Doc, reason: str) -> str:
        """The fleet backs off the token endpoint after a failure: use the current token if it still works."""
        if reason == "expiring" and doc.expires_at - self._clock() > _STILL_USABLE_S:
            return self._use(doc)
        until = _iso(doc.data.get("token_backoff_until"))
        raise BlingRetryableError(0, "token_backoff", "the token endpoint is being backed off",
                                  f"the last token call failed ({doc.data.get('last_error')}); no instance calls "
                                  f"again before {until}", path="/oauth/token")

    def _refresh_under_lease(self, doc: _Doc, holder: str, reason: str = "expiring", takeover: bool = False) -> str:
        refresh_token = doc.refresh_token
        requested_at = self._clock()
        handed_over = False  # a late answer may still come: its handler owns the lease from then on
        try:
            try:
                if not token_meter.take_slot(self._firestore, self._settings):
                    log.warning("refused a Bling token call: the fleet made its per-minute share already",
                                event="bling_token_fleet_cap",
                                limit_per_min=self._settings.token_fleet_calls_per_min)
                    raise BlingRetryableError(0, "token_fleet_cap", "fleet token call cap reached",
                                              "the fleet made its token calls for this minute; retry later",
                                              path="/oauth/token")
                token = self._endpoint.request_token(
                    {"grant_type": "refresh_token", "refresh_token": refresh_token},
                    deadline_s=_call_deadline_s(self._settings),
                    on_late=lambda outcome: self._on_late_answer(doc.version, holder, requested_at, outcome))
            except BlingError as exc:
                handed_over = exc.error_type == "token_call_deadline"
                if exc.error_type == "invalid_grant":
                    return self._after_invalid_grant(refresh_token, holder, exc, takeover)
                if isinstance(exc, BlingAuthorizationBroken):
                    self._flag_broken(holder, exc)
                    raise
                if not handed_over and exc.error_type not in _LOCAL_REFUSALS:
                    self._release_lease(holder, failure=exc)
                if reason == "expiring" and doc.expires_at - self._clock() > _STILL_USABLE_S:
                    log.warning("token refresh failed; the current access token is still valid and used meanwhile",
                                event="bling_token_refresh_failed", **exc.log_fields())
                    return self._use(doc)
                raise
            return self._write_pair(doc.version, token, requested_at)  # clears the lease with the pair
        finally:
            if not handed_over:
                self._release_lease(holder)  # a no-op once the pair, a flag or a failure has cleared it

    def _on_late_answer(self, seen_version: int, holder: str, requested_at: float, outcome: Any) -> None:
        """The token endpoint answered after the caller stopped waiting (OAuthClient.request_token's deadline)."""
        try:
            if isinstance(outcome, dict):
                log.info("a late token answer arrived; storing it", event="bling_token_late_answer")
                self._write_pair(seen_version, outcome, requested_at)
            elif isinstance(outcome, BlingAuthorizationBroken):
                self._flag_broken(holder, outcome)
            elif isinstance(outcome, BlingError) and outcome.error_type != "invalid_grant":
                self._release_lease(holder, failure=outcome)
        except Exception as exc:  # noqa: BLE001 - a background thread: log, never raise into nowhere
            log.warning(f"could not handle a late token answer: {exc}", event="bling_token_late_failed",
                        error_type=type(exc).__name__)
        finally:
            # invalid_grant: the next holder gets it too and decides (ADR 003 step 5); no flag from a thread.
            self._release_lease(holder)

    def _write_pair(self, seen_version: int, token: dict[str, Any], requested_at: float) -> str:
        """Store the new pair (fenced by version), retrying any Firestore failure until the write deadline: it is
        the only copy of the new single-use refresh token."""
        from google.api_core import exceptions as gexc

        fields = self._pair_fields(token, requested_at)
        fields["version"] = seen_version + 1
        deadline = time.monotonic() + _write_deadline_s(self._settings)
        pause = 0.05
        while True:
            try:
                current = self._read()
                if current.version != seen_version:
                    if current.version == seen_version + 1 and current.refresh_token == token["refresh_token"]:
                        return self._stored(current, fields, token)  # an "failed" attempt had landed after all
                    # A newer pair is already stored (our lease expired and another instance refreshed): ours loses.
                    log.warning("a newer Bling token pair was stored meanwhile; discarding ours",
                                event="bling_token_fenced", token_version=current.version)
                    return self._use(current)
                if self._cas(current, fields):
                    return self._stored(current, fields, token)
                continue  # another writer in between (a lease or a flag): read again at once
            except gexc.GoogleAPICallError as exc:
                if time.monotonic() + pause > deadline:
                    log.error("could not store the refreshed Bling token pair: Firestore kept failing "
                              f"({type(exc).__name__}) until the write deadline; the next refresh may need a "
                              f"re-authorization at {self._start_url()}", event="bling_token_store_failed",
                              error_type=type(exc).__name__)
                    raise BlingRetryableError(0, "token_store_unavailable", "could not store the refreshed pair",
                                              f"Firestore failed: {type(exc).__name__}", path="/oauth/token") from None
                log.warning(f"storing the refreshed token pair failed ({type(exc).__name__}); retrying",
                            event="bling_token_store_retry", error_type=type(exc).__name__)
                self._sleep(pause * random.uniform(1.0, 1.5))
                pause = min(pause * 2, 1.0)

    def _stored(self, before: _Doc, fields: dict[str, Any], token: dict[str, Any]) -> str:
        self._cached = (token["access_token"], fields["expires_at"].timestamp())
        log.info("refreshed the Bling access token", event="bling_token_refreshed",
                 token_version=fields["version"], token_expires_at=fields["expires_at"].isoformat())
        if before.reauth_required or before.authorization_broken:
            log.info("a valid token pair cleared the authorization flag", event="bling_authorization_restored")
            self._on_restored()  # the work parked behind the flag resumes now, not at the daily run
        return str(token["access_token"])

    def _after_invalid_grant(self, refused: str, holder: str, exc: BlingError, takeover: bool = False) -> str:
        # After taking over an expired lease the refused token may have been spent by the previous holder, whose
        # answer and write can still be on their way: wait for them (one lease) before calling it a revocation.
        grace_until = time.monotonic() + (self._settings.token_lease_s if takeover else 0.0)
        contention = 0
        while contention < _CAS_ATTEMPTS:
            doc = self._read()
            if doc.has_pair and doc.refresh_token != refused:
                if doc.data.get("lease_holder") == holder:
                    self._release_lease(holder)
                log.info("our refresh token was refused but another instance had already refreshed",
                         event="bling_token_refresh_race", token_version=doc.version)
                return self._use(doc)
            if doc.reauth_required:
                raise BlingReauthorizationRequired(401, "reauth_required", "Bling re-authorization required",
                                                   f"the refresh token was refused; open {self._start_url()}",
                                                   path="/oauth/token")
            if time.monotonic() < grace_until:
                self._sleep(0.2)
                continue
            description = exc.description or exc.error_message
            if self._cas(doc, {"reauth_required": True, "reauth_required_at": _ts(self._clock()),
                               "last_error": _error_text(exc), "last_error_at": _ts(self._clock()),
                               "lease_holder": None, "lease_until": None}):
                log.error(f"Bling refused the stored refresh token (invalid_grant): re-authorization is required; "
                          f"open {self._start_url()} and approve the app", event="bling_reauthorization_required",
                          reauthorize_url=self._start_url(), bling_error_description=description)
                raise BlingReauthorizationRequired(exc.status, "invalid_grant", exc.error_message, description,
                                                   path="/oauth/token")
            contention += 1
        raise BlingRetryableError(0, "token_store_contention", "could not record the refused refresh token",
                                  "the token document kept changing", path="/oauth/token")

    def _flag_broken(self, holder: str, exc: BlingError) -> None:
        """The token endpoint refused our client or company: one flag for the fleet, one ERROR saying what to fix."""
        fingerprint = self._endpoint.credentials_fingerprint()
        reason = _what_to_fix(exc, self._start_url(), token_endpoint=True)
        for _ in range(_CAS_ATTEMPTS):
            doc = self._read()
            if doc.authorization_broken and doc.data.get("authorization_broken_fingerprint") == fingerprint:
                return
            fields = self._broken_fields(exc, reason, fingerprint)
            if doc.data.get("lease_holder") not in (holder, None):  # someone else's lease: not ours to clear
                del fields["lease_holder"]
                del fields["lease_until"]
            if self._cas(doc, fields):
                _log_broken(reason, exc, self._start_url())
                return

    def _broken_fields(self, exc: BlingError, reason: str, fingerprint: str | None) -> dict[str, Any]:
        now = _ts(self._clock())
        return {"authorization_broken": True, "authorization_broken_reason": reason,
                "authorization_broken_fingerprint": fingerprint, "authorization_broken_at": now,
                "last_error": _error_text(exc), "last_error_at": now, "lease_holder": None, "lease_until": None}

    def _release_lease(self, holder: str, failure: BlingError | None = None) -> None:
        """Give the lease back (best effort: it expires anyway); with `failure`, record it and start the fleet's
        backoff, so no instance calls the token endpoint again before it."""
        from google.api_core import exceptions as gexc

        for _ in range(_CAS_ATTEMPTS):
            try:
                doc = self._read()
                if doc.data.get("lease_holder") != holder:
                    return
                fields: dict[str, Any] = {"lease_holder": None, "lease_until": None}
                if failure is not None:
                    failures = int(doc.data.get("token_failures") or 0) + 1
                    now = self._clock()
                    fields.update(last_error=_error_text(failure), last_error_at=_ts(now), token_failures=failures,
                                  token_backoff_until=_ts(now + _backoff_s(self._settings, failures, failure)))
                if self._cas(doc, fields):
                    return
            except gexc.GoogleAPICallError:
                return


def _call_deadline_s(settings: Settings) -> float:
    """The token call's total deadline: a third of the lease, so a live holder is done long before it expires."""
    return max(0.5, min(settings.token_http_timeout_s, settings.token_lease_s / 3))


def _write_deadline_s(settings: Settings) -> float:
    return max(0.5, settings.token_lease_s / 3)


def _backoff_s(settings: Settings, failures: int, failure: BlingError) -> float:
    """Fleet-wide wait after the n-th consecutive failed token call: exponential, and at least what Bling asks."""
    base = min(settings.token_backoff_max_s, settings.token_backoff_min_s * 2 ** max(0, failures - 1))
    return float(max(base * random.uniform(1.0, 1.2), float(getattr(failure, "retry_after_s", 0.0))))


def _error_text(exc: BlingError) -> str:
    """last_error as /status shows it: Bling's type, the HTTP status, what it said."""
    status = f" (HTTP {exc.status})" if exc.status else ""
    return f"{exc.error_type or 'error'}{status}: {exc.description or exc.error_message}"[:500]


def _what_to_fix(exc: BlingError, start_url: str, token_endpoint: bool) -> str:
    said = f"{exc.error_type or exc.status}: {exc.description or exc.error_message}"
    if exc.error_type == "invalid_client":
        return (f"Bling refused the client credentials ({said}): the client secret the functions use "
                "(BLING_CLIENT_SECRET, Secret Manager) is not the app's current one - it changes when it is "
                "regenerated in Bling. Deploy the current client id and secret; the first instance with them "
                "tries once and clears this. The work is parked meanwhile.")
    if exc.error_type == "insufficient_scope":
        return (f"Bling refused the scopes of the authorization ({said}): add the missing scopes to the app in "
                f"Bling, then re-authorize at {start_url}. The work is parked meanwhile.")
    where = "the token endpoint" if token_endpoint else "the API"
    return (f"Bling refused the authorization at {where} ({said}): the company or the user may be inactive or "
            f"without permission. Fix it in Bling, then re-authorize at {start_url}. The work is parked "
            "meanwhile.")


def _log_broken(reason: str, exc: BlingError, start_url: str) -> None:
    log.error(reason, event="bling_authorization_broken", reauthorize_url=start_url, **exc.log_fields())
