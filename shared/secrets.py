"""Secrets: from the environment (Cloud Functions maps Secret Manager versions into env vars), or read from
Secret Manager by resource name when only `<NAME>_SECRET` is set (scripts, Cloud Build).

Every secret read here is registered with the logger so its value can never appear in a log line.
"""
from __future__ import annotations

import functools

from shared import log
from shared.errors import ConfigurationError


@functools.lru_cache(maxsize=16)
def _from_secret_manager(resource: str) -> str:
    from google.cloud import secretmanager

    if "/versions/" not in resource:
        resource = f"{resource}/versions/latest"
    response = secretmanager.SecretManagerServiceClient().access_secret_version(name=resource)
    return response.payload.data.decode("utf-8").strip()


def resolve(value: str, secret_resource: str, what: str, required: bool = True) -> str:
    if not value and secret_resource:
        value = _from_secret_manager(secret_resource)
    if not value and required:
        raise ConfigurationError(f"{what} is not configured (set the env var or its *_SECRET resource name)")
    log.register_secret(value)
    return value
