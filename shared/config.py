"""All configuration comes from environment variables, read here and nowhere else.

The Bling URLs are configurable so the same code runs against the real Bling (a user's own app), the local
sandbox, or any Bling-compatible server.
"""
from __future__ import annotations

import dataclasses
import functools
import os

_REAL_BLING_API = "https://api.bling.com.br/Api/v3"
_REAL_BLING_TOKEN_URL = "https://api.bling.com.br/Api/v3/oauth/token"
_REAL_BLING_AUTHORIZE_URL = "https://www.bling.com.br/Api/v3/oauth/authorize"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw else default


@dataclasses.dataclass(frozen=True)
class Settings:
    project_id: str
    # Bling
    bling_api_base: str
    bling_token_url: str
    bling_authorize_url: str
    bling_client_id: str
    bling_client_id_secret: str  # Secret Manager resource name, used when bling_client_id is empty
    bling_client_secret: str
    bling_client_secret_secret: str
    # TOTAL deadline of one HTTP request to the API (connect + the whole body; shared.bling.http.get_within).
    # Bling answers in well under a second; a hung call is cut here and retried on a fresh connection.
    bling_http_timeout_s: float
    # Account-wide request budget shared by every instance of every function (requests per second).
    rate_budget_per_s: float
    # Refresh the access token when fewer than this many seconds of validity remain.
    token_refresh_margin_s: int
    # Rate ledger (docs/decisions/001): a send may start at most this fraction of a tick late.
    rate_tick_slack: float
    # Token refresh (docs/decisions/003): lease length, token-endpoint timeout, and the per-process cap on
    # token-endpoint calls per 60 s (Bling blocks the IP for 1 h at 20 calls in 60 s).
    token_lease_s: float
    token_http_timeout_s: float
    token_calls_per_min: int
    # Fleet-wide guards of the token endpoint (docs/decisions/008): at most this many token calls in any 60 s for
    # every instance together (Firestore meter; Bling blocks the IP at 20), and after a failed call nobody calls
    # again before a backoff that starts at token_backoff_min_s and doubles up to token_backoff_max_s.
    token_fleet_calls_per_min: int
    token_backoff_min_s: float
    token_backoff_max_s: float
    # AES-256-GCM key of the token fields (urlsafe base64 of 32 bytes; Secret Manager secret bling-token-key).
    bling_token_key: str
    # The rate ledger never sleeps longer than this for one slot: a tick further ahead is clock skew or an
    # oversubscribed account, and the work is better redelivered (docs/decisions/001).
    rate_max_wait_s: float
    # Fleet-wide caps under Bling's per-IP limits (docs/decisions/012), for a deployment that sends from one static
    # egress IP (Terraform sets them then: 40 and 250); 0 = off. Requests per second of every account together
    # (Bling blocks the IP at 600 in 10 s), and error answers per 10 s (Bling blocks it at 300).
    fleet_rate_per_s: float
    fleet_errors_per_10s: int
    # How long a state issued by the auth function's /start stays valid.
    oauth_state_ttl_s: int
    # Public URL of the auth function, quoted in the ERROR that asks a human to re-authorize.
    auth_public_url: str
    # The operator's key for the auth function's /start and /status (Secret Manager `bling-auth-admin-key`,
    # docs/decisions/007); empty = those routes refuse everyone.
    auth_admin_key: str
    # PostgreSQL: DB_HOST for a direct TCP connection, otherwise CLOUD_SQL_INSTANCE through the connector.
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str
    db_password_secret: str
    cloud_sql_instance: str
    # Pipeline behaviour
    timezone: str
    daily_lookback_days: int
    max_range_days: int
    list_page_size: int
    list_page_cap: int
    ids_per_message: int
    enrich_max_age_days: int
    # Firestore collection prefix, so several pipelines (or tests) can share one database. Topic and collection
    # names themselves are not settings: shared.topology is their one source of truth.
    firestore_prefix: str


def read_settings() -> Settings:
    """The settings in the environment now; a composition root (shared.deps.Deps) reads them once."""
    return Settings(
        project_id=_env("GOOGLE_CLOUD_PROJECT") or _env("GCP_PROJECT") or "demo-local",
        bling_api_base=_env("BLING_API_BASE", _REAL_BLING_API).rstrip("/"),
        bling_token_url=_env("BLING_TOKEN_URL", _REAL_BLING_TOKEN_URL),
        bling_authorize_url=_env("BLING_AUTHORIZE_URL", _REAL_BLING_AUTHORIZE_URL),
        bling_client_id=_env("BLING_CLIENT_ID"),
        bling_client_id_secret=_env("BLING_CLIENT_ID_SECRET"),
        bling_client_secret=_env("BLING_CLIENT_SECRET"),
        bling_client_secret_secret=_env("BLING_CLIENT_SECRET_SECRET"),
        bling_http_timeout_s=_env_float("BLING_HTTP_TIMEOUT_S", 5.0),
        rate_budget_per_s=_env_float("BLING_RATE_BUDGET_PER_S", 2.8),
        token_refresh_margin_s=_env_int("BLING_TOKEN_REFRESH_MARGIN_S", 600),
        rate_tick_slack=_env_float("BLING_RATE_TICK_SLACK", 0.10),
        token_lease_s=_env_float("BLING_TOKEN_LEASE_S", 30.0),
        token_http_timeout_s=_env_float("BLING_TOKEN_HTTP_TIMEOUT_S", 15.0),
        token_calls_per_min=_env_int("BLING_TOKEN_CALLS_PER_MIN", 5),
        token_fleet_calls_per_min=_env_int("BLING_TOKEN_FLEET_CALLS_PER_MIN", 8),
        token_backoff_min_s=_env_float("BLING_TOKEN_BACKOFF_MIN_S", 15.0),
        token_backoff_max_s=_env_float("BLING_TOKEN_BACKOFF_MAX_S", 600.0),
        bling_token_key=_env("BLING_TOKEN_KEY"),
        rate_max_wait_s=_env_float("BLING_RATE_MAX_WAIT_S", 60.0),
        fleet_rate_per_s=_env_float("BLING_FLEET_RATE_PER_S", 0.0),
        fleet_errors_per_10s=_env_int("BLING_FLEET_ERRORS_PER_10S", 0),
        oauth_state_ttl_s=_env_int("OAUTH_STATE_TTL_S", 600),
        auth_public_url=_env("AUTH_PUBLIC_URL", "<auth function URL>"),
        auth_admin_key=_env("AUTH_ADMIN_KEY"),
        db_host=_env("DB_HOST"),
        db_port=_env_int("DB_PORT", 5432),
        db_name=_env("DB_NAME", "bling"),
        db_user=_env("DB_USER", "bling_etl"),
        db_password=_env("DB_PASSWORD"),
        db_password_secret=_env("DB_PASSWORD_SECRET"),
        cloud_sql_instance=_env("CLOUD_SQL_INSTANCE"),
        timezone=_env("ETL_TIMEZONE", "America/Sao_Paulo"),
        daily_lookback_days=_env_int("DAILY_LOOKBACK_DAYS", 7),
        max_range_days=_env_int("MAX_RANGE_DAYS", 366 * 10),
        list_page_size=_env_int("LIST_PAGE_SIZE", 100),
        list_page_cap=_env_int("LIST_PAGE_CAP", 500),
        ids_per_message=_env_int("IDS_PER_MESSAGE", 10),
        enrich_max_age_days=_env_int("ENRICH_MAX_AGE_DAYS", 30),
        firestore_prefix=_env("FIRESTORE_PREFIX", "bling"),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """read_settings() cached, for local tooling that starts a process and is not a function; functions, commands
    and library code get their settings from their composition root (shared.deps.Deps, or the command's own)."""
    return read_settings()


def reset_settings_cache() -> None:
    """Tests change the environment between cases; this makes the next get_settings() read it again."""
    get_settings.cache_clear()
