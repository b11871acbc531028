"""Bling's OAuth2 authorization-code flow, as documented and as the community observed it (API-NOTES §2.2).

- /oauth/authorize auto-approves and redirects to the REGISTERED redirect URI (a `redirect_uri` parameter is
  ignored, as on Bling) with `code` and `state`.
- Codes live `code_ttl_s` (60 s) and are single-use; exchanging one twice revokes the user: every token of the
  client dies.
- /oauth/token wants `Authorization: Basic base64(id:secret)` and a form body; credentials in the body are refused.
- Refresh tokens are single-use (rotation): each refresh returns a new pair and kills the old refresh token. The old
  access token stays valid until it expires unless `refresh_revokes_access` is set.
- `enable-jwt: 1` on the token request gives JWT-looking tokens of ~1,600 characters instead of 40-char opaque ones.
- Several companies (accounts) can authorize the one app: each code and token is bound to the account whose user
  approved (the server says which), a refresh gives a pair of the same account, and revoking a user (code reuse,
  admin) kills that account's tokens and codes only.

Error bodies use Bling's shape `{"error": {"type", "message", "description"}}`; the descriptions are those of
the OAuth server Bling runs (bshaffer/oauth2-server-php), which is where "The access token provided has expired"
comes from. No method takes a lock: the server calls them under its own lock.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import secrets
import time
import urllib.parse
from typing import Any

# The scope string Bling returns: the ids of the app's scopes, separated by spaces.
SCOPE = "98309 98310 98313 318257570 318257583 5862218180 6631498 106168710 200877821 220621674"


class OAuthError(Exception):
    def __init__(self, status: int, type_: str, description: str, message: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": {"type": type_, "message": message or type_, "description": description}}


@dataclasses.dataclass
class _Code:
    client_id: str
    expires_at: float
    account: str
    used: bool = False


@dataclasses.dataclass
class _Token:
    kind: str  # "access" | "refresh"
    client_id: str
    expires_at: float
    account: str
    revoked: bool = False
    partner: str = ""  # the access token issued together with this refresh token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(client_id: str, kind: str, ttl: float) -> str:
    """A token that looks like Bling's JWTs (three base64url parts, ~1,600 chars); nothing verifies it."""
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "kid": secrets.token_hex(20)}
    payload = {
        "iss": "https://www.bling.com.br", "aud": client_id, "jti": secrets.token_hex(40), "iat": now, "nbf": now,
        "exp": now + int(ttl), "sub": str(secrets.randbelow(10**10)), "token_use": kind,
        "company": {"id": secrets.token_hex(16), "name": "Empresa Sandbox Ltda"},
        "scopes": [int(s) for s in SCOPE.split()] + [secrets.randbelow(10**9) for _ in range(40)],
    }
    signature = secrets.token_bytes(512)
    return ".".join((_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()),
                     _b64url(signature)))


class OAuthState:
    def __init__(self, *, client_id: str, client_secret: str, redirect_uri: str, code_ttl_s: float = 60,
                 access_ttl_s: float = 21600, refresh_ttl_s: float = 30 * 86400,
                 refresh_revokes_access: bool = False) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.code_ttl_s = code_ttl_s
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.refresh_revokes_access = refresh_revokes_access
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self.user_revocations = 0

    # ---- authorize

    def authorize(self, query: dict[str, list[str]], now: float, account: str,
                  authorize_error: str | None = None) -> str:
        """The Location of the 302 that /oauth/authorize answers when `account`'s user approves (or, with
        authorize_error, refuses)."""
        state = (query.get("state") or [None])[0]
        client_id = (query.get("client_id") or [""])[0]
        params: dict[str, str]
        if client_id != self.client_id:
            params = {"error": "invalid_client", "error_description": "The client id supplied is invalid"}
        elif (query.get("response_type") or [""])[0] != "code":
            params = {"error": "invalid_request", "error_description": "Invalid or missing response type"}
        elif authorize_error:
            params = {"error": authorize_error,
                      "error_description": "The user denied access to your application"
                      if authorize_error == "access_denied" else authorize_error}
        else:
            code = secrets.token_hex(20)
            self._codes[code] = _Code(client_id, now + self.code_ttl_s, account)
            params = {"code": code}
        if state is not None:
            params["state"] = state
        sep = "&" if "?" in self.redirect_uri else "?"
        return self.redirect_uri + sep + urllib.parse.urlencode(params)

    # ---- token endpoint

    def _client(self, authorization: str | None, form: dict[str, list[str]]) -> str:
        if "client_secret" in form:
            raise OAuthError(401, "invalid_client", "The client credentials are invalid")
        if not authorization or not authorization.lower().startswith("basic "):
            raise OAuthError(401, "invalid_client", "The client credentials are invalid")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", "The client credentials are invalid") from None
        client_id, _, secret = decoded.partition(":")
        if client_id != self.client_id or not secrets.compare_digest(secret, self.client_secret):
            raise OAuthError(401, "invalid_client", "The client credentials are invalid")
        return client_id

    def token(self, headers: dict[str, str], content_type: str, form: dict[str, list[str]],
              now: float) -> dict[str, Any]:
        """The JSON of a successful /oauth/token call; raises OAuthError otherwise."""
        client_id = self._client(headers.get("authorization"), form)
        if not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise OAuthError(400, "invalid_request",
                             'The content type for POST requests must be "application/x-www-form-urlencoded"')
        jwt = headers.get("enable-jwt", "").strip() == "1"
        grant = (form.get("grant_type") or [""])[0]
        if grant == "authorization_code":
            code_value = (form.get("code") or [""])[0]
            if not code_value:
                raise OAuthError(400, "invalid_request", 'Missing parameter: "code" is required')
            code = self._codes.get(code_value)
            if code is None or code.client_id != client_id:
                raise OAuthError(400, "invalid_grant", "Authorization code doesn't exist or is invalid for the client")
            if code.used:
                self.revoke_user(code.account, keep_code=code_value)
                raise OAuthError(400, "VALIDATION_ERROR",
                                 "This authorization code has already been used, for security reasons the user "
                                 "has been revoked.", message="Invalid authorization code")
            code.used = True
            if now >= code.expires_at:
                raise OAuthError(400, "invalid_grant", "The authorization code has expired")
            return self.issue_pair(client_id, now, code.account, jwt=jwt)
        if grant == "refresh_token":
            value = (form.get("refresh_token") or [""])[0]
            if not value:
                raise OAuthError(400, "invalid_request", 'Missing parameter: "refresh_token" is required')
            token = self._tokens.get(value)
            if token is None or token.kind != "refresh" or token.revoked or token.client_id != client_id:
                raise OAuthError(400, "invalid_grant", "Invalid refresh token")
            if now >= token.expires_at:
                raise OAuthError(400, "invalid_grant", "Refresh token has expired")
            token.revoked = True  # single-use
            if self.refresh_revokes_access and token.partner in self._tokens:
                self._tokens[token.partner].revoked = True
            return self.issue_pair(client_id, now, token.account, jwt=jwt)
        if not grant:
            raise OAuthError(400, "invalid_request", "The grant type was not specified in the request")
        raise OAuthError(400, "unsupported_grant_type", f'Grant type "{grant}" not supported')

    def issue_pair(self, client_id: str, now: float, account: str, *, jwt: bool = False) -> dict[str, Any]:
        access = _jwt(client_id, "access", self.access_ttl_s) if jwt else secrets.token_hex(20)
        refresh = _jwt(client_id, "refresh", self.refresh_ttl_s) if jwt else secrets.token_hex(20)
        self._tokens[access] = _Token("access", client_id, now + self.access_ttl_s, account)
        self._tokens[refresh] = _Token("refresh", client_id, now + self.refresh_ttl_s, account, partner=access)
        return {"access_token": access, "expires_in": int(self.access_ttl_s), "token_type": "Bearer",
                "scope": SCOPE, "refresh_token": refresh}

    # ---- bearer check

    def grant_account(self, form: dict[str, list[str]]) -> str | None:
        """The account a token request's code or refresh token belongs to (None when unknown); no side effect."""
        code = self._codes.get((form.get("code") or [""])[0])
        token = self._tokens.get((form.get("refresh_token") or [""])[0])
        return code.account if code else token.account if token else None

    def bearer_account(self, authorization: str | None) -> str | None:
        """The account whose token the header carries, live or not (None when missing or unknown); no check."""
        _, _, value = (authorization or "").strip().partition(" ")
        token = self._tokens.get(value.strip())
        return token.account if token else None

    def check_bearer(self, authorization: str | None, now: float) -> None:
        expired = OAuthError(401, "invalid_token", "The access token provided has expired")
        if not authorization:
            raise expired
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise OAuthError(400, "invalid_request", "Malformed auth header")
        token = self._tokens.get(value.strip())
        if token is None or token.kind != "access" or token.revoked or now >= token.expires_at:
            raise expired

    # ---- admin

    def _of(self, account: str | None) -> list[_Token]:
        """The tokens of one account (None: of every account)."""
        return [t for t in self._tokens.values() if account is None or t.account == account]

    def expire_access_tokens(self, now: float, account: str | None = None) -> int:
        n = 0
        for t in self._of(account):
            if t.kind == "access" and not t.revoked and t.expires_at > now:
                t.expires_at = now
                n += 1
        return n

    def revoke_refresh_tokens(self, account: str | None = None) -> int:
        n = 0
        for t in self._of(account):
            if t.kind == "refresh" and not t.revoked:
                t.revoked = True
                n += 1
        return n

    def revoke_user(self, account: str | None = None, keep_code: str | None = None) -> None:
        """What Bling does on code reuse or when the company's user removes the app: every token and pending code of
        that account (None: of every account) dies.

        The reused code itself is kept (marked used) so a third attempt still reports the reuse.
        """
        for t in self._of(account):
            t.revoked = True
        self._codes = {k: c for k, c in self._codes.items()
                       if k == keep_code or (account is not None and c.account != account)}
        self.user_revocations += 1
