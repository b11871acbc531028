"""Issue 10 item 12: the token fields are stored encrypted (AES-256-GCM, BLING_TOKEN_KEY), bound to their
document and field; a plain-text document from before is read once and re-written encrypted (ADR 008)."""
from __future__ import annotations

import base64
import os

import pytest

from shared import firestore_client, topology
from shared.errors import PermanentError
from tests.integration.bling.helpers import raw_token_doc, set_env, store_pair, token_doc
from tests.integration.process_deps import new_token_store, token_document


def test_the_stored_document_holds_no_token_in_clear_text(bling_server):
    pair = store_pair(bling_server)

    raw = raw_token_doc()
    stored = repr(raw)
    for token in (pair["access_token"], pair["refresh_token"]):
        assert token not in stored
        for part in token.split("."):  # not even a piece of the JWT
            assert len(part) < 20 or part not in stored
    assert raw["access_token"].startswith("v1:") and raw["refresh_token"].startswith("v1:")
    assert new_token_store().get_valid_access_token() == pair["access_token"]


def test_a_wrong_key_cannot_decrypt_and_is_a_configuration_error(bling_server):
    store_pair(bling_server)
    set_env(BLING_TOKEN_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode())
    bling_server.reset_stats()

    with pytest.raises(Exception) as raised:
        new_token_store().get_valid_access_token()

    from shared.errors import ConfigurationError

    assert isinstance(raised.value, ConfigurationError) and not isinstance(raised.value, PermanentError)
    assert "BLING_TOKEN_KEY" in str(raised.value)
    assert bling_server.stats()["token_calls"] == 0


def test_a_ciphertext_moved_to_the_other_field_does_not_decrypt(bling_server):
    store_pair(bling_server)
    raw = raw_token_doc()
    token_document().update({"access_token": raw["refresh_token"]})

    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        new_token_store().get_valid_access_token()


def test_a_missing_key_is_a_configuration_error_without_token_calls(bling_server):
    store_pair(bling_server, expires_in=300)
    del os.environ["BLING_TOKEN_KEY"]
    set_env()
    bling_server.reset_stats()

    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        new_token_store().get_valid_access_token()
    assert "BLING_TOKEN_KEY" in str(raised.value)
    assert bling_server.stats()["token_calls"] == 0


def test_a_plain_text_document_from_before_is_used_and_rewritten_encrypted(bling_server):
    import datetime

    pair = bling_server.issue_tokens(jwt=True)
    now = datetime.datetime.now(tz=datetime.UTC)
    token_document().set({  # as the previous release stored it
        "access_token": pair["access_token"], "refresh_token": pair["refresh_token"],
        "expires_at": now + datetime.timedelta(seconds=300), "version": 1, "lease_holder": None,
        "lease_until": None, "reauth_required": False, "last_error": None, "authorized_at": now})
    bling_server.reset_stats()

    token = new_token_store().get_valid_access_token()  # inside the margin: refreshed with the plain refresh token

    assert bling_server.stats()["token_calls"] == 1 and token != pair["access_token"]
    raw = raw_token_doc()
    assert raw["access_token"].startswith("v1:") and raw["refresh_token"].startswith("v1:")
    assert token_doc()["access_token"] == token and raw["version"] == 2
