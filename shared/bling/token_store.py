"""The Bling OAuth token pair in Firestore, refreshed by one instance at a time (docs/decisions/003).

Document `<prefix>_oauth/bling`: access_token, refresh_token (text; JWTs are 1.5-3 kB), expires_at, version (int,
bumped on every new pair and nothing else), lease_holder, lease_until, last_refresh_at, authorized_at,
reauth_required, last_error.

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
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from shared import firestore_client, log
from shared.bling import oauth
from shared.bling.errors import BlingError, BlingReauthorizationRequired, BlingRetryableError
from shared.config import get_settings

_DOC_ID = "bling"
_UTC = datetime.timezone.utc
# Compare-and-set attempts before giving up (each failure means another instance wrote in between).
_CAS_ATTEMPTS = 8
# A token that still has this much validity is used when a refresh fails for a transient reason.
_STILL_USABLE_S = 60.0


@dataclass(frozen=True)
class _Doc:
    """One read of the token document."""
    exists: bool
    data: dict[str, Any]
    update_time: Any

    @property
    def access_token(self) -> str:
        return self.data.get("access_token") or ""

    @property
    def refresh_token(self) -> str:
        return self.data.get("refresh_token") or ""

    @property
    def version(self) -> int:
        return int(self.data.get("version") or 0)

    @property
    def expires_at(self) -> float:
        value = self.data.get("expires_at")
        return value.timestamp() if isinstance(value, datetime.datetime) else 0.0

    @property
    def reauth_required(self) -> bool:
        return bool(self.data.get("reauth_required"))

    def lease_live(self, now: float) -> bool:
        until = self.data.get("lease_until")
        return bool(self.data.get("lease_holder")) and isinstance(until, datetime.datetime) and until.timestamp() > now


def _ts(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz=_UTC)


def _iso(value: Any) -> str | None:
    return value.astimezone(_UTC).isoformat() if isinstance(value, datetime.datetime) else None


class TokenStore:
    def __init__(self, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # threads of one process refresh one at a time (no Firestore polling)
        self._cached: tuple[str, float] | None = None  # (access_token, expires_at)

    # ------------------------------------------------------------------------------------------------ public API

    def get_valid_access_token(self) -> str:
        """An access token valid for more than BLING_TOKEN_REFRESH_MARGIN_S, refreshing it first if needed."""
        margin = get_settings().token_refresh_margin_s
        cached = self._cached
        if cached and cached[1] - self._clock() > margin:
            return cached[0]
        with self._lock:
            doc = self._read()
            self._raise_if_unusable(doc)
            if doc.expires_at - self._clock() > margin:
                return self._use(doc)
            return self._refresh(doc, reason="expiring")

    def refresh_after_rejection(self, rejected_access_token: str) -> str:
        """Bling answered 401 invalid_token to this token: refresh, unless the store already holds a newer one."""
        with self._lock:
            self._cached = None
            doc = self._read()
            self._raise_if_unusable(doc)
            if doc.access_token != rejected_access_token and doc.expires_at > self._clock():
                return self._use(doc)
            return self._refresh(doc, reason="rejected")

    def store_authorization(self, token_response: dict[str, Any], requested_at: float | None = None) -> None:
        """Save the pair from a code exchange (auth callback): a new version, reauth_required cleared."""
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
                    ref.update(fields, option=firestore_client.client().write_option(
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
        """What a human needs to know about the stored authorization; never a token."""
        doc = self._read()
        now = self._clock()
        stored = bool(doc.refresh_token)
        result = {
            "token_stored": stored,
            "expires_at": _iso(doc.data.get("expires_at")),
            "expires_in_s": max(0, int(doc.expires_at - now)) if stored else 0,
            "reauth_required": doc.reauth_required or not stored,
            "last_refresh_at": _iso(doc.data.get("last_refresh_at")),
            "authorized_at": _iso(doc.data.get("authorized_at")),
            "version": doc.version,
            "refresh_in_progress": doc.lease_live(now),
            "last_error": doc.data.get("last_error"),
        }
        if result["reauth_required"]:
            result["reauthorize_url"] = _start_url()
        return result

    # ------------------------------------------------------------------------------------------------ internals

    def _ref(self):
        return firestore_client.collection("oauth").document(_DOC_ID)

    def _read(self) -> _Doc:
        snap = self._ref().get()
        data = (snap.to_dict() or {}) if snap.exists else {}
        for key in ("access_token", "refresh_token"):
            log.register_secret(data.get(key))
        return _Doc(snap.exists, data, snap.update_time if snap.exists else None)

    def _cas(self, doc: _Doc, fields: dict[str, Any]) -> bool:
        """Write fields only if the document is still exactly as read in `doc`."""
        from google.api_core import exceptions as gexc

        try:
            self._ref().update(fields, option=firestore_client.client().write_option(last_update_time=doc.update_time))
            return True
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False

    def _use(self, doc: _Doc) -> str:
        self._cached = (doc.access_token, doc.expires_at)
        return doc.access_token

    def _raise_if_unusable(self, doc: _Doc) -> None:
        if not doc.refresh_token:
            _log_missing_authorization_once()
            raise BlingReauthorizationRequired(401, "not_authorized", "no Bling authorization stored",
                                               f"open {_start_url()} to authorize", path="/oauth/token")
        if doc.reauth_required:
            raise BlingReauthorizationRequired(401, "reauth_required", "Bling re-authorization required",
                                               f"the refresh token was refused; open {_start_url()}",
                                               path="/oauth/token")

    def _pair_fields(self, token: dict[str, Any], requested_at: float) -> dict[str, Any]:
        now = self._clock()
        return {"access_token": token["access_token"], "refresh_token": token["refresh_token"],
                "expires_at": _ts(requested_at + token["expires_in"]), "last_refresh_at": _ts(now),
                "lease_holder": None, "lease_until": None, "reauth_required": False, "last_error": None}

    def _refresh(self, doc: _Doc, reason: str) -> str:
        """Get a newer pair than the one in `doc`: refresh it ourselves under the lease, or wait for whoever does."""
        settings = get_settings()
        seen_version = doc.version
        deadline = time.monotonic() + settings.token_lease_s + settings.token_http_timeout_s
        pause = 0.1
        first = True
        while True:
            if not first:
                doc = self._read()
                self._raise_if_unusable(doc)
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
            holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            if not self._cas(doc, {"lease_holder": holder, "lease_until": _ts(now + settings.token_lease_s)}):
                continue  # the document changed since our read: look again
            log.info("took the Bling token refresh lease", event="bling_token_lease", reason=reason,
                     lease_holder=holder, token_version=seen_version)
            return self._refresh_under_lease(doc, holder, reason)

    def _refresh_under_lease(self, doc: _Doc, holder: str, reason: str = "expiring") -> str:
        refresh_token = doc.refresh_token
        requested_at = self._clock()
        try:
            token = oauth.request_token({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except BlingError as exc:
            if exc.error_type == "invalid_grant":
                return self._after_invalid_grant(refresh_token, holder, exc)
            self._release_lease(holder, last_error=f"{exc.error_type}: {exc.description or exc.error_message}")
            if reason == "expiring" and doc.expires_at - self._clock() > _STILL_USABLE_S:
                log.warning("token refresh failed; the current access token is still valid and used meanwhile",
                            event="bling_token_refresh_failed", **exc.log_fields())
                return self._use(doc)
            raise
        return self._write_pair(doc.version, token, requested_at)

    def _write_pair(self, seen_version: int, token: dict[str, Any], requested_at: float) -> str:
        fields = self._pair_fields(token, requested_at)
        fields["version"] = seen_version + 1
        for _ in range(_CAS_ATTEMPTS):
            current = self._read()
            if current.version != seen_version:
                # A newer pair is already stored (our lease expired and another instance refreshed): ours loses.
                log.warning("a newer Bling token pair was stored meanwhile; discarding ours",
                            event="bling_token_fenced", token_version=current.version)
                return self._use(current)
            if self._cas(current, fields):
                self._cached = (fields["access_token"], fields["expires_at"].timestamp())
                log.info("refreshed the Bling access token", event="bling_token_refreshed",
                         token_version=fields["version"], token_expires_at=fields["expires_at"].isoformat())
                return fields["access_token"]
        raise BlingRetryableError(0, "token_store_contention", "could not store the refreshed pair",
                                  "the token document kept changing", path="/oauth/token")

    def _after_invalid_grant(self, refused: str, holder: str, exc: BlingError) -> str:
        for _ in range(_CAS_ATTEMPTS):
            doc = self._read()
            if doc.refresh_token and doc.refresh_token != refused:
                if doc.data.get("lease_holder") == holder:
                    self._release_lease(holder)
                log.info("our refresh token was refused but another instance had already refreshed",
                         event="bling_token_refresh_race", token_version=doc.version)
                return self._use(doc)
            if doc.reauth_required:
                raise BlingReauthorizationRequired(401, "reauth_required", "Bling re-authorization required",
                                                   f"the refresh token was refused; open {_start_url()}",
                                                   path="/oauth/token")
            description = exc.description or exc.error_message
            if self._cas(doc, {"reauth_required": True, "reauth_required_at": _ts(self._clock()),
                               "last_error": f"invalid_grant: {description}",
                               "lease_holder": None, "lease_until": None}):
                log.error(f"Bling refused the stored refresh token (invalid_grant): re-authorization is required; "
                          f"open {_start_url()} and approve the app", event="bling_reauthorization_required",
                          reauthorize_url=_start_url(), bling_error_description=description)
                raise BlingReauthorizationRequired(exc.status, "invalid_grant", exc.error_message, description,
                                                   path="/oauth/token")
        raise BlingRetryableError(0, "token_store_contention", "could not record the refused refresh token",
                                  "the token document kept changing", path="/oauth/token")

    def _release_lease(self, holder: str, last_error: str | None = None) -> None:
        for _ in range(_CAS_ATTEMPTS):
            doc = self._read()
            if doc.data.get("lease_holder") != holder:
                return
            fields: dict[str, Any] = {"lease_holder": None, "lease_until": None}
            if last_error:
                fields["last_error"] = last_error
            if self._cas(doc, fields):
                return


_missing_logged = False


def _log_missing_authorization_once() -> None:
    global _missing_logged
    if not _missing_logged:
        _missing_logged = True
        log.error(f"no Bling authorization is stored: open {_start_url()} and approve the app",
                  event="bling_not_authorized", reauthorize_url=_start_url())


def _start_url() -> str:
    return get_settings().auth_public_url.rstrip("/") + "/start"


_store: TokenStore | None = None
_store_lock = threading.Lock()


def get_token_store() -> TokenStore:
    global _store
    with _store_lock:
        if _store is None:
            _store = TokenStore()
        return _store


def reset_token_store() -> None:
    global _store, _missing_logged
    with _store_lock:
        _store = None
        _missing_logged = False
