"""The sandbox HTTP server: Bling API v3 for the endpoints the pipeline uses, plus admin and fault knobs.

    server = SandboxServer(build_profile("small", seed=1)).start()
    server.api_base      # http://127.0.0.1:PORT/Api/v3
    ...
    server.stop()

Request pipeline for an API call (/Api/v3/..., not /oauth):
    record arrival → IP block (403) → injected faults (drop / 5xx HTML / 429 storm) → bearer token (401)
    → account limiter (429, counted only when accepted) → latency + slow fault → route (404 / 405 / handler)
    → optional truncated body.
The bearer check comes before the limiter because Bling's limit is per account and only a valid token tells
which account a request belongs to.

Several accounts (companies) can sit behind one server (accounts.py): every API request is answered from the
account its token belongs to, with that account's limiter and faults (a request whose token names no account gets
the default account's faults, then its 401); the IP guard and the token endpoint's meter are shared, as on Bling.

GET /nfe orders by id descending (newest first; ids grow with dataEmissao in the dataset). GET /produtos orders by
id descending too. All state sits behind one lock; handler threads only sleep outside it.
"""
from __future__ import annotations

import calendar
import contextlib
import copy
import dataclasses
import datetime
import http.server
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from local.sandbox import jsonutil
from local.sandbox.accounts import APPROVER_PARAM, DEFAULT_ACCOUNT, Account, SandboxAccount, build_accounts
from local.sandbox.dataset import Dataset
from local.sandbox.faults import Decision, FaultInjector, html_body
from local.sandbox.oauth import OAuthError, OAuthState
from local.sandbox.ratelimit import AccountLimiter, IpGuard, RequestRecord, compute_stats

__all__ = ["DEFAULT_ACCOUNT", "SandboxAccount", "SandboxServer"]

API_PREFIX = "/Api/v3"
ADMIN_PREFIX = "/__admin/"
MAX_LIMITE = 100

_DAY_TEXT = "O limite de requisições por dia foi atingido, tente novamente amanhã."
_SECOND_TEXT = "O limite de requisições por segundo foi atingido, tente novamente mais tarde."


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, description: str,
                 fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(description)
        self.status = status
        error: dict[str, Any] = {"type": type_, "message": message, "description": description}
        if fields:
            error["fields"] = fields
        self.body = {"error": error}


def _not_found() -> ApiError:
    return ApiError(404, "RESOURCE_NOT_FOUND", "Recurso não encontrado",
                    "O recurso requisitado não foi encontrado.")


def _validation(element: str, msg: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", "Não foi possível realizar a consulta", msg,
                    fields=[{"code": 1, "msg": msg, "element": element, "namespace": "DEFAULT"}])


def _rate_body(period: str, limit: int | float) -> dict[str, Any]:
    return {"error": {"type": "TOO_MANY_REQUESTS", "message": "Limite de requisições atingido.",
                      "description": _DAY_TEXT if period == "day" else _SECOND_TEXT,
                      "limit": limit, "period": period}}


_IP_BLOCK_BODY = {"error": {"type": "FORBIDDEN", "message": "Acesso bloqueado",
                            "description": "O IP foi bloqueado temporariamente por excesso de requisições."}}


# ------------------------------------------------------------------------------------------------ query parsing

def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int_param(query: dict[str, list[str]], name: str, default: int | None, lo: int | None = None,
               hi: int | None = None) -> int | None:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _validation(name, f"O parâmetro {name} deve ser um número inteiro.") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _validation(name, f"O valor do parâmetro {name} é inválido.")
    return value


def _array_param(query: dict[str, list[str]], name: str) -> list[str]:
    """PHP-style arrays: name[]=a&name[]=b (also name[0]=a). A bare `name=` is not the array and is ignored."""
    pattern = re.compile(re.escape(name) + r"\[\d*\]$")
    return [v for key, values in query.items() if pattern.match(key) for v in values]


def _parse_stamp(name: str, raw: str) -> datetime.datetime:
    """`YYYY-MM-DD HH:MM:SS` or a bare `YYYY-MM-DD`, which means 00:00:00 of that day (API-NOTES §4.6)."""
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(raw.strip(), fmt)
        except ValueError:
            continue
    raise _validation(name, f"A data informada no parâmetro {name} é inválida.")


def _plus_one_year(dt: datetime.datetime) -> datetime.datetime:
    day = min(dt.day, calendar.monthrange(dt.year + 1, dt.month)[1])
    return dt.replace(year=dt.year + 1, day=day)


def _page(items: list[Any], pagina: int, limite: int, overlap: int = 0, oversize: int = 0) -> list[Any]:
    step = max(1, limite - overlap) if overlap else limite
    start = (pagina - 1) * step
    return items[start:start + limite + oversize]


# ------------------------------------------------------------------------------------------------ app state

class SandboxApp:
    """Everything the handler needs, behind one lock: the accounts (each its data, limiter, faults) and what the IP
    and the app share (OAuth grants, the IP guard, the token meter, the request log)."""

    def __init__(self, dataset: Dataset | None, *, client_id: str, client_secret: str, redirect_uri: str,
                 rate_per_s: float, daily_limit: int, latency_s: float, code_ttl_s: float, access_ttl_s: float,
                 refresh_ttl_s: float = 30 * 86400, refresh_revokes_access: bool = False,
                 product_recent_days: int = 30, verbose: bool = False,
                 accounts: list[SandboxAccount] | None = None) -> None:
        if (dataset is None) == (accounts is None):
            raise ValueError("give the sandbox one dataset (one account) or accounts=[...], not both")
        specs = accounts if accounts is not None else [SandboxAccount(DEFAULT_ACCOUNT, dataset)]  # type: ignore[arg-type]
        self.lock = threading.RLock()
        self.accounts = build_accounts(specs, rate_per_s=rate_per_s, daily_limit=daily_limit, latency_s=latency_s,
                                       product_recent_days=product_recent_days)
        self.default = next(iter(self.accounts.values()))
        self.oauth = OAuthState(client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri,
                                code_ttl_s=code_ttl_s, access_ttl_s=access_ttl_s, refresh_ttl_s=refresh_ttl_s,
                                refresh_revokes_access=refresh_revokes_access)
        self.guard = IpGuard()
        self.verbose = verbose
        self.records: list[RequestRecord] = []
        self.token_calls: list[tuple[float, str | None]] = []  # (time, account of the code or refresh token)
        self.authorize_calls: list[str | None] = []  # the account each /oauth/authorize call named

    # The default account's parts, under the names they had when the sandbox served one company.
    @property
    def dataset(self) -> Dataset:
        return self.default.dataset

    @property
    def limiter(self) -> AccountLimiter:
        return self.default.limiter

    @property
    def faults(self) -> FaultInjector:
        return self.default.faults

    def account(self, name: str | None = None) -> Account:
        """The named account (None: the default); 404 naming the known ones otherwise."""
        if name is None:
            return self.default
        found = self.accounts.get(name)
        if found is None:
            raise ApiError(404, "RESOURCE_NOT_FOUND", "Recurso não encontrado",
                           f"no sandbox account {name!r} (accounts: {', '.join(self.accounts)})")
        return found

    # ---- admin operations (also callable in-process through SandboxServer); account None = the default one,
    # except for the stats and the request log, where None means every account (the IP's view).

    def truth(self, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            return self.account(account).dataset.truth()

    def stats(self, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            if account is not None:
                return self._stats_of(self.account(account).name)
            totals = compute_stats(list(self.records), [t for t, _ in self.token_calls], self.guard,
                                   len(self.authorize_calls))
            return {**totals, "accounts": {name: self._stats_of(name) for name in self.accounts}}

    def _stats_of(self, name: str) -> dict[str, Any]:
        """One account's stats: its requests, token calls and authorize calls; the IP block fields are the IP's."""
        stats = compute_stats([r for r in self.records if r.account == name],
                              [t for t, a in self.token_calls if a == name], self.guard,
                              self.authorize_calls.count(name))
        stats["daily_used"] = self.accounts[name].limiter.daily_used()
        return stats

    def request_log(self, account: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            name = None if account is None else self.account(account).name
            return [vars(r).copy() for r in self.records if name is None or r.account == name]

    def reset_stats(self, account: str | None = None) -> None:
        with self.lock:
            if account is not None:
                name = self.account(account).name
                self.records = [r for r in self.records if r.account != name]
                self.token_calls = [c for c in self.token_calls if c[1] != name]
                self.authorize_calls = [a for a in self.authorize_calls if a != name]
                return
            self.records.clear()
            self.token_calls.clear()
            self.authorize_calls.clear()
            self.guard.reset_history()

    def set_situacao(self, nfe_id: int, situacao: int, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            note = self.account(account).dataset.nfe.get(int(nfe_id))
            if note is None:
                raise _not_found()
            if int(situacao) not in range(1, 12):
                raise _validation("situacao", "situacao must be 1..11")
            note["situacao"] = int(situacao)
            return {"id": note["id"], "situacao": note["situacao"]}

    def configure(self, knobs: dict[str, Any], account: str | None = None) -> dict[str, Any]:
        """Unscoped (account None): the app's and the IP's knobs, and the default account's. Scoped: that account's."""
        with self.lock:
            acct = self.account(account)
            for key, value in knobs.items():
                if key in Account.KNOBS:
                    acct.configure(key, value)
                elif account is not None:
                    raise _validation(key, f"{key!r} is not a per-account knob (those are {', '.join(Account.KNOBS)}); "
                                           "set it with the unscoped /__admin/config")
                elif key in ("code_ttl_s", "access_ttl_s", "refresh_ttl_s"):
                    setattr(self.oauth, key, float(value))
                elif key == "refresh_revokes_access":
                    self.oauth.refresh_revokes_access = bool(value)
                elif key == "ip_block_rules":
                    self.guard.rules.enabled = bool(value)
                elif key in ("token_block_threshold", "token_block_window_s", "token_block_s"):
                    attr = {"token_block_threshold": "token_calls", "token_block_window_s": "token_window_s",
                            "token_block_s": "token_block_s"}[key]
                    setattr(self.guard.rules, attr, type(getattr(self.guard.rules, attr))(value))
                else:
                    raise _validation(key, f"unknown config key {key!r}")
            return self.config(account)

    def config(self, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            acct = self.account(account)
            if account is not None:
                return {"account": acct.name, **acct.config()}
            return {**acct.config(), "code_ttl_s": self.oauth.code_ttl_s, "access_ttl_s": self.oauth.access_ttl_s,
                    "refresh_ttl_s": self.oauth.refresh_ttl_s,
                    "refresh_revokes_access": self.oauth.refresh_revokes_access,
                    "ip_block_rules": self.guard.rules.enabled,
                    "token_block_threshold": self.guard.rules.token_calls,
                    "token_block_window_s": self.guard.rules.token_window_s,
                    "token_block_s": self.guard.rules.token_block_s,
                    "client_id": self.oauth.client_id, "redirect_uri": self.oauth.redirect_uri}

    def set_faults(self, spec: dict[str, Any], account: str | None = None) -> dict[str, Any]:
        with self.lock:
            faults = self.account(account).faults
            try:
                faults.configure(spec)
            except (ValueError, TypeError) as exc:
                raise _validation("faults", str(exc)) from None
            return dict(faults.spec)

    def get_faults(self, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            return dict(self.account(account).faults.spec)

    def issue_tokens(self, jwt: bool = False, account: str | None = None) -> dict[str, Any]:
        with self.lock:
            return self.oauth.issue_pair(self.oauth.client_id, time.monotonic(), self.account(account).name, jwt=jwt)

    def expire_access_tokens(self, account: str | None = None) -> int:
        with self.lock:
            return self.oauth.expire_access_tokens(time.monotonic(), self.account(account).name)

    def revoke_refresh_tokens(self, account: str | None = None) -> int:
        with self.lock:
            return self.oauth.revoke_refresh_tokens(self.account(account).name)

    def revoke_user(self, account: str | None = None) -> None:
        """The company's user removes the app (as on code reuse): every token and code of that account dies."""
        with self.lock:
            self.oauth.revoke_user(self.account(account).name)

    def set_daily_used(self, used: int | None, account: str | None = None) -> dict[str, Any]:
        """Count `used` requests against the account's quota today (None: all of it, so the next call gets the
        daily 429 until reset_daily_limit or midnight)."""
        with self.lock:
            limiter = self.account(account).limiter
            return {"daily_used": limiter.set_daily_used(limiter.daily_limit if used is None else used),
                    "daily_limit": limiter.daily_limit}

    def unblock(self) -> None:
        with self.lock:
            self.guard.unblock()

    # ---- API resources (called with the lock held; return the response body)

    def nfe_list(self, acct: Account, query: dict[str, list[str]]) -> dict[str, Any]:
        pagina = _int_param(query, "pagina", 1, lo=1)
        limite = _int_param(query, "limite", 100, lo=1)
        if limite > MAX_LIMITE:
            raise _validation("limite", f"O limite máximo de registros por página é {MAX_LIMITE}.")
        situacao = _int_param(query, "situacao", None, lo=1, hi=11)
        tipo = _one(query, "tipo") or "1"
        if tipo not in ("0", "1"):
            raise _validation("tipo", "O valor do parâmetro tipo é inválido.")
        start_raw, end_raw = _one(query, "dataEmissaoInicial"), _one(query, "dataEmissaoFinal")
        start = _parse_stamp("dataEmissaoInicial", start_raw) if start_raw else None
        end = _parse_stamp("dataEmissaoFinal", end_raw) if end_raw else None
        if start and end and end > _plus_one_year(start):
            raise ApiError(400, "VALIDATION_ERROR", "Não foi possível realizar a consulta",
                           "O intervalo entre as datas não pode ser superior a um ano.",
                           fields=[{"code": 1, "msg": "O período informado não pode ser superior a um ano.",
                                    "element": "dataEmissaoFinal", "namespace": "NOTAS_FISCAIS"}])
        numero = _int_param(query, "numero", None)
        serie = _int_param(query, "serie", None)
        chave = _one(query, "chaveAcesso")
        start_s = start.strftime("%Y-%m-%d %H:%M:%S") if start else None
        end_s = end.strftime("%Y-%m-%d %H:%M:%S") if end else None
        selected = []
        for note in acct.dataset.nfe.values():
            if note["tipo"] != int(tipo):
                continue
            if situacao is None and note["situacao"] == 2:
                continue
            if situacao is not None and note["situacao"] != situacao:
                continue
            if (start_s and note["dataEmissao"] < start_s) or (end_s and note["dataEmissao"] > end_s):
                continue
            if numero is not None and note["numero"].lstrip("0") != str(numero):
                continue
            if serie is not None and note["serie"] != serie:
                continue
            if chave and note["chaveAcesso"] != chave.strip():
                continue
            selected.append(note["id"])
        selected.sort(reverse=True)
        page = _page(selected, pagina, limite, acct.faults.page_overlap, acct.faults.page_oversize)
        return {"data": [acct.dataset.nfe_list_item(i) for i in page]}

    def nfe_detail(self, acct: Account, nfe_id: int) -> dict[str, Any]:
        note = acct.dataset.nfe.get(nfe_id)
        if note is None:
            raise _not_found()
        return {"data": copy.deepcopy(note)}

    def contato(self, acct: Account, contact_id: int) -> dict[str, Any]:
        contact = acct.dataset.contacts.get(contact_id)
        if contact is None:
            raise _not_found()
        return {"data": copy.deepcopy(contact)}

    def forma_pagamento(self, acct: Account, form_id: int) -> dict[str, Any]:
        form = acct.dataset.payment_forms.get(form_id)
        if form is None:
            raise _not_found()
        return {"data": copy.deepcopy(form)}

    def produto(self, acct: Account, product_id: int) -> dict[str, Any]:
        product = acct.dataset.products.get(product_id)
        if product is None:
            raise _not_found()
        return {"data": copy.deepcopy(product)}

    def produtos_list(self, acct: Account, query: dict[str, list[str]]) -> dict[str, Any]:
        pagina = _int_param(query, "pagina", 1, lo=1)
        limite = _int_param(query, "limite", 100, lo=1)
        if limite > MAX_LIMITE:
            raise _validation("limite", f"O limite máximo de registros por página é {MAX_LIMITE}.")
        criterio = _int_param(query, "criterio", 1, lo=1, hi=5)
        codigos = set(_array_param(query, "codigos"))
        gtins = set(_array_param(query, "gtins"))
        try:
            ids = {int(v) for v in _array_param(query, "idsProdutos")}
        except ValueError:
            raise _validation("idsProdutos", "Os IDs informados são inválidos.") from None
        nome = (_one(query, "nome") or "").strip().lower()
        recent_from = (acct.today - datetime.timedelta(days=acct.product_recent_days)).strftime("%Y-%m-%d %H:%M:%S")
        selected = []
        for pid, product in acct.dataset.products.items():
            meta = acct.dataset.product_meta[pid]
            active = product["situacao"] == "A"
            deleted = meta["deleted"]
            visible = {
                1: active and not deleted and meta["created_at"] >= recent_from,
                2: active and not deleted,
                3: not active and not deleted,
                4: deleted,
                5: True,
            }[criterio]
            if not visible:
                continue
            if codigos and product["codigo"] not in codigos:
                continue
            if gtins and product["gtin"] not in gtins:
                continue
            if ids and pid not in ids:
                continue
            if nome and nome not in product["nome"].lower():
                continue
            selected.append(pid)
        selected.sort(reverse=True)
        return {"data": [acct.dataset.product_list_item(i) for i in _page(selected, pagina, limite)]}


# Routes: (regex on the path after /Api/v3, kind, {method: handler name}); the group is the numeric id.
_ID = r"/([^/]+)"
ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^/nfe/?$"), "nfe_list", "nfe_list"),
    (re.compile(r"^/nfe" + _ID + r"/?$"), "nfe_detail", "nfe_detail"),
    (re.compile(r"^/contatos" + _ID + r"/?$"), "contato", "contato"),
    (re.compile(r"^/produtos/?$"), "produtos_list", "produtos_list"),
    (re.compile(r"^/produtos" + _ID + r"/?$"), "produto", "produto"),
    (re.compile(r"^/formas-pagamentos" + _ID + r"/?$"), "forma_pagamento", "forma_pagamento"),
]


def match_route(subpath: str) -> tuple[str, str | None, str | None]:
    """(kind, handler name or None, path id or None)."""
    for pattern, kind, handler in ROUTES:
        m = pattern.match(subpath)
        if m:
            return kind, handler, (m.group(1) if m.groups() else None)
    return "other", None, None


def _ok(action: Callable[..., None], *args: Any) -> dict[str, bool]:
    action(*args)
    return {"ok": True}


def _admin_tables(app: SandboxApp, body: dict[str, Any], account: str | None
                  ) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """The admin operations (GET table, POST table) for one account (None: the default account, and the IP)."""
    gets: dict[str, Callable[[], Any]] = {
        "truth": lambda: app.truth(account), "stats": lambda: app.stats(account),
        "requests": lambda: app.request_log(account), "config": lambda: app.config(account),
        "faults": lambda: app.get_faults(account),
    }
    posts: dict[str, Callable[[], Any]] = {
        "reset_stats": lambda: _ok(app.reset_stats, account),
        "cancel": lambda: app.set_situacao(int(body["id"]), 2, account),
        "set_situacao": lambda: app.set_situacao(int(body["id"]), int(body["situacao"]), account),
        "expire_access_tokens": lambda: {"expired": app.expire_access_tokens(account)},
        "revoke_refresh_tokens": lambda: {"revoked": app.revoke_refresh_tokens(account)},
        "revoke_user": lambda: _ok(app.revoke_user, account),
        "issue_tokens": lambda: app.issue_tokens(jwt=bool(body.get("jwt")), account=account),
        "config": lambda: app.configure(body, account),
        "faults": lambda: app.set_faults(body, account),
        "exhaust_daily_limit": lambda: app.set_daily_used(None, account),
        "reset_daily_limit": lambda: app.set_daily_used(0, account),
    }
    if account is None:  # what only the whole sandbox has
        gets["health"] = lambda: {"ok": True}
        gets["accounts"] = lambda: {"accounts": list(app.accounts), "default": app.default.name}
        posts["unblock"] = lambda: _ok(app.unblock)
    return gets, posts


# ------------------------------------------------------------------------------------------------ HTTP

class _Dropped(Exception):
    """The connection was closed on purpose (reset fault)."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add 40 ms per response.
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""

    @property
    def app(self) -> SandboxApp:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            super().log_message(format, *args)

    # ---- plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, truncate: bool = False) -> None:
        body = jsonutil.dumps(obj)
        if truncate and len(body) > 2:
            body = body[: len(body) // 2]
        self._send(status, body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Dropped()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        path = url.path
        try:
            if path.startswith(ADMIN_PREFIX):
                self._admin(method, path[len(ADMIN_PREFIX):].strip("/"), self._body())
            elif path.startswith(API_PREFIX + "/oauth/"):
                self._oauth(method, path[len(API_PREFIX) + len("/oauth/"):].strip("/"), query)
            elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._api(method, path[len(API_PREFIX):], query)
            else:
                self._json(404, _not_found().body)
        except _Dropped:
            return

    # ---- admin

    def _admin(self, method: str, name: str, raw: bytes) -> None:
        app = self.app
        try:
            body = jsonutil.loads(raw) if raw.strip() else {}
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        # /__admin/accounts/<account>/<op> is <op> for that account; /__admin/<op> for the default one (or the IP).
        parts = name.split("/")
        account, op = (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "accounts" else (None, name)
        gets, posts = _admin_tables(app, body, account)
        table = gets if method == "GET" else posts if method == "POST" else {}
        if op not in table:
            known = op in gets or op in posts
            self._json(405 if known else 404, {"error": f"no admin endpoint {method} /__admin/{name}"})
            return
        try:
            self._json(200, table[op]())
        except ApiError as exc:
            self._json(exc.status, exc.body)
        except (KeyError, ValueError, TypeError) as exc:
            self._json(400, {"error": f"bad admin request: {exc!r}"})

    # ---- oauth

    def _oauth(self, method: str, name: str, query: dict[str, list[str]]) -> None:
        app = self.app
        now = time.monotonic()
        raw = self._body()
        if name == "authorize":
            # Which company's user approves: on Bling, whoever is logged in; here `sandbox_account` (a parameter
            # Bling would ignore), the default account when absent.
            approver = _one(query, APPROVER_PARAM)
            with app.lock:
                app.authorize_calls.append(approver or app.default.name)
                blocked = app.guard.is_blocked(now)
                try:
                    acct = app.account(approver)
                except ApiError as exc:
                    unknown: ApiError | None = exc
                else:
                    unknown = None
                location = None if blocked or unknown or method != "GET" else app.oauth.authorize(
                    query, now, acct.name, acct.authorize_error)
            if blocked:
                self._json(403, _IP_BLOCK_BODY)
            elif unknown is not None:
                self._json(unknown.status, unknown.body)
            elif location is None:
                self._json(405, ApiError(405, "METHOD_NOT_ALLOWED", "Método não permitido",
                                         "O método HTTP utilizado não é permitido.").body)
            else:
                self._send(302, b"", "text/html", {"Location": location})
            return
        if name != "token":
            self._json(404, _not_found().body)
            return
        if method != "POST":
            self._json(405, ApiError(405, "METHOD_NOT_ALLOWED", "Método não permitido",
                                     "O método HTTP utilizado não é permitido.").body)
            return
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        with app.lock:
            now = time.monotonic()
            app.token_calls.append((now, app.oauth.grant_account(form)))
            app.guard.note_token_call(now)
            if app.guard.is_blocked(now):
                status, result = 403, _IP_BLOCK_BODY
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, result = 200, app.oauth.token(headers, self.headers.get("Content-Type", ""), form, now)
                except OAuthError as exc:
                    status, result = exc.status, exc.body
        self._json(status, result)

    # ---- API

    def _api(self, method: str, subpath: str, query: dict[str, list[str]]) -> None:
        app = self.app
        kind, handler, raw_id = match_route(subpath)
        record = RequestRecord(t_mono=0.0, t_wall=0.0, kind=kind, method=method, path=subpath)
        status, body, decision, sleep_s = self._api_decide(record)
        if sleep_s > 0:
            time.sleep(sleep_s)
        if decision.reset or decision.hang_s:
            self._finish(record, 0)
            self._drop()
        if body is None:  # accepted: compute the answer now (after the latency, as a real server would)
            with app.lock:
                status, body = self._api_answer(app.account(record.account), method, query, handler, raw_id)
        if isinstance(body, bytes):
            self._finish(record, status)
            self._send(status, body, "text/html")
            return
        truncate = status == 200 and decision.truncate
        self._finish(record, status)
        self._json(status, body, truncate=truncate)

    def _api_decide(self, record: RequestRecord) -> tuple[int, Any, Decision, float]:
        """Everything decided at arrival, under the lock: (status, body or None when accepted, faults, sleep).

        The arrival time is read inside the lock, so the limiter and the request log see arrivals in order.
        The token names the account (its faults, its limiter, its data); a token of no account gets the default
        account's faults, then its 401.
        """
        app = self.app
        authorization = self.headers.get("Authorization")
        with app.lock:
            now = record.t_mono = time.monotonic()
            record.t_wall = time.time()
            record.account = app.oauth.bearer_account(authorization)
            acct = app.account(record.account)
            app.records.append(record)
            if app.guard.is_blocked(now):
                return 403, _IP_BLOCK_BODY, Decision(), 0.0
            decision = acct.faults.decide()
            if decision.reset:
                return 0, None, decision, 0.0
            if decision.hang_s:
                return 0, None, decision, decision.hang_s
            if decision.status_5xx:
                return decision.status_5xx, html_body(decision.status_5xx), decision, 0.0
            if decision.storm_429:
                return 429, _rate_body("second", acct.limiter.limit_value("second")), decision, 0.0
            try:
                app.oauth.check_bearer(authorization, now)
                if acct.faults.tick_token_expiry(now):
                    app.oauth.expire_access_tokens(now, acct.name)
                    app.oauth.check_bearer(authorization, now)
            except OAuthError as exc:
                return exc.status, exc.body, decision, 0.0
            period = acct.limiter.try_acquire(now)
            if period:
                record.rate_limited = True
                return 429, _rate_body(period, acct.limiter.limit_value(period)), decision, 0.0
            record.counted = True
            return 0, None, decision, acct.latency_s + decision.slow_s

    def _api_answer(self, acct: Account, method: str, query: dict[str, list[str]], handler: str | None,
                    raw_id: str | None) -> tuple[int, Any]:
        app = self.app
        if handler is None:
            return 404, _not_found().body
        if method not in ("GET", "HEAD"):
            return 405, ApiError(405, "METHOD_NOT_ALLOWED", "Método não permitido",
                                 "O método HTTP utilizado não é permitido para este recurso.").body
        try:
            if raw_id is None:
                return 200, getattr(app, handler)(acct, query)
            if not raw_id.isdigit():
                raise _not_found()
            return 200, getattr(app, handler)(acct, int(raw_id))
        except ApiError as exc:
            return exc.status, exc.body

    def _finish(self, record: RequestRecord, status: int) -> None:
        with self.app.lock:
            record.status = status
            self.app.guard.note_response(time.monotonic(), status >= 400 or status == 0)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    app: SandboxApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, closed session) is normal here; real bugs still print a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """The sandbox in a background thread. Port 0 picks a free port; `.url` and `.api_base` tell which.

    One company: SandboxServer(dataset, ...). Several: SandboxServer(accounts=[SandboxAccount(name, dataset, ...),
    ...]); the first is the default (the unscoped shortcuts and admin endpoints mean it), and the server-wide
    rate_per_s, daily_limit, latency_s and product_recent_days fill what an account leaves None."""

    def __init__(self, dataset: Dataset | None = None, *, client_id: str = "sandbox-client",
                 client_secret: str = "sandbox-secret", redirect_uri: str = "http://127.0.0.1/callback",
                 rate_per_s: float = 3.0, daily_limit: int = 120000, latency_s: float = 0.0, code_ttl_s: float = 60,
                 access_ttl_s: float = 21600, refresh_ttl_s: float = 30 * 86400,
                 refresh_revokes_access: bool = False, product_recent_days: int = 30,
                 host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                 accounts: list[SandboxAccount] | None = None) -> None:
        # The server owns copies: admin calls (cancel, set_situacao) must not change the caller's objects.
        self.app = SandboxApp(copy.deepcopy(dataset), client_id=client_id, client_secret=client_secret,
                              redirect_uri=redirect_uri, rate_per_s=rate_per_s, daily_limit=daily_limit,
                              latency_s=latency_s, code_ttl_s=code_ttl_s, access_ttl_s=access_ttl_s,
                              refresh_ttl_s=refresh_ttl_s, refresh_revokes_access=refresh_revokes_access,
                              product_recent_days=product_recent_days, verbose=verbose,
                              accounts=None if accounts is None else
                              [dataclasses.replace(a, dataset=copy.deepcopy(a.dataset)) for a in accounts])
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self._host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        httpd = _HTTPServer((self._host, self._port), Handler)
        httpd.app = self.app
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="bling-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def token_url(self) -> str:
        return self.api_base + "/oauth/token"

    @property
    def authorize_url(self) -> str:
        return self.api_base + "/oauth/authorize"

    @property
    def account_names(self) -> list[str]:
        """The accounts in order; the first is the default."""
        return list(self.app.accounts)

    def authorize_url_for(self, account: str) -> str:
        """The authorize URL with `account`'s user approving (append the OAuth parameters with &)."""
        return f"{self.authorize_url}?{urllib.parse.urlencode({APPROVER_PARAM: account})}"

    # In-process shortcuts for the admin endpoints; account None = the default account (for stats: every account).
    def truth(self, account: str | None = None) -> dict[str, Any]:
        return self.app.truth(account)

    def stats(self, account: str | None = None) -> dict[str, Any]:
        return self.app.stats(account)

    def reset_stats(self, account: str | None = None) -> None:
        self.app.reset_stats(account)

    def issue_tokens(self, jwt: bool = False, account: str | None = None) -> dict[str, Any]:
        return self.app.issue_tokens(jwt=jwt, account=account)

    def cancel(self, nfe_id: int, account: str | None = None) -> None:
        self.app.set_situacao(nfe_id, 2, account)

    def set_situacao(self, nfe_id: int, situacao: int, account: str | None = None) -> None:
        self.app.set_situacao(nfe_id, situacao, account)

    def configure(self, account: str | None = None, **knobs: Any) -> dict[str, Any]:
        return self.app.configure(knobs, account)

    def set_faults(self, account: str | None = None, **spec: Any) -> dict[str, Any]:
        return self.app.set_faults(spec, account)

    def expire_access_tokens(self, account: str | None = None) -> int:
        return self.app.expire_access_tokens(account)

    def revoke_refresh_tokens(self, account: str | None = None) -> int:
        return self.app.revoke_refresh_tokens(account)

    def revoke_user(self, account: str | None = None) -> None:
        self.app.revoke_user(account)

    def exhaust_daily_limit(self, account: str | None = None) -> dict[str, Any]:
        return self.app.set_daily_used(None, account)
