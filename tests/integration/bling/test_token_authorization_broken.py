"""Issue 10 item 1: broken authorization or configuration parks the work behind one fleet-wide flag (ADR 008).

Real Firestore emulator and the sandbox's token endpoint; the API answers Bling gives only in production
(403 insufficient_scope, 401 "Empresa inativa") come from a small HTTP server of the test.
"""
from __future__ import annotations

import json

import pytest

from shared import firestore_client, parking, topology
from shared.bling.client import BlingClient
from shared.errors import AuthorizationBroken, PermanentError, RetryableError
from shared.handler import pubsub_handler
from tests.chaos.reliability import record
from tests.integration.bling.helpers import FakeApi, log_lines, run_concurrently, set_env, store_pair, token_doc
from tests.integration.process_deps import account_db, current_deps, new_client, new_token_store, parked_collection


def _errors(out: str) -> list[dict]:
    return [line for line in log_lines(out) if line.get("severity") == "ERROR"]


def test_invalid_client_sets_one_fleet_flag_and_stops_token_calls(bling_server, capsys):
    store_pair(bling_server, expires_in=300)  # inside the refresh margin: every worker wants a refresh
    set_env(BLING_CLIENT_SECRET="the-secret-before-it-was-regenerated")
    bling_server.reset_stats()
    capsys.readouterr()

    first = run_concurrently(3, lambda i: new_token_store().get_valid_access_token())
    again = run_concurrently(3, lambda i: new_token_store().get_valid_access_token())

    from shared.bling.errors import BlingAuthorizationBroken

    assert all(isinstance(r, BlingAuthorizationBroken) for r in first + again), first + again
    assert not any(isinstance(r, PermanentError) for r in first + again)  # per-invoice handlers must not eat it
    assert bling_server.stats()["token_calls"] == 1  # one try, then the flag stops the whole fleet
    doc = token_doc()
    assert doc["authorization_broken"] is True and doc["last_error"].startswith("invalid_client")
    fingerprint = doc["authorization_broken_fingerprint"]
    assert fingerprint and "the-secret-before" not in fingerprint and len(fingerprint) == 16
    errors = _errors(capsys.readouterr().out)
    assert len(errors) == 1 and "client secret" in errors[0]["message"]
    status = new_token_store().status()
    assert status["authorization_broken"] is True and "invalid_client" in status["last_error"]


def test_deploying_the_right_secret_tries_once_and_clears_the_flag(bling_server, pubsub_topology):
    store_pair(bling_server, expires_in=300)
    set_env(BLING_CLIENT_SECRET="the-secret-before-it-was-regenerated")
    with pytest.raises(AuthorizationBroken):
        new_token_store().get_valid_access_token()
    topic = "bling-nfe"
    parked = _message('{"run_id": "r", "window": "2026-01", "notes": []}', "m-1")
    parking.park(parked_collection(), topic, parked, "BlingAuthorizationBroken")
    bling_server.reset_stats()

    set_env(BLING_CLIENT_SECRET=bling_server.client_secret)  # the regenerated secret is deployed
    token = new_token_store().get_valid_access_token()

    assert bling_server.stats()["token_calls"] == 1
    doc = token_doc()
    assert doc["authorization_broken"] is False and doc["access_token"] == token and doc["last_error"] is None
    assert list(parked_collection().stream()) == []  # released at once
    assert pubsub_topology.pull_data(topic) != []


def test_a_new_authorization_clears_the_flag(bling_server):
    store_pair(bling_server, expires_in=300)
    set_env(BLING_CLIENT_SECRET="wrong")
    with pytest.raises(AuthorizationBroken):
        new_token_store().get_valid_access_token()
    set_env(BLING_CLIENT_SECRET="wrong")  # same credentials: still blocked, and no token call
    bling_server.reset_stats()
    with pytest.raises(AuthorizationBroken):
        new_token_store().get_valid_access_token()
    assert bling_server.stats()["token_calls"] == 0

    set_env(BLING_CLIENT_SECRET=bling_server.client_secret)
    pair = store_pair(bling_server)  # what the auth callback does after a new consent

    assert token_doc()["authorization_broken"] is False
    assert new_token_store().get_valid_access_token() == pair["access_token"]


def test_a_missing_client_secret_is_a_configuration_error_not_a_dropped_message(bling_server):
    store_pair(bling_server, expires_in=300)
    del __import__("os").environ["BLING_CLIENT_SECRET"]
    set_env()
    bling_server.reset_stats()

    with pytest.raises(Exception) as raised:
        new_token_store().get_valid_access_token()

    from shared.errors import ConfigurationError

    assert isinstance(raised.value, ConfigurationError) and not isinstance(raised.value, PermanentError)
    assert bling_server.stats()["token_calls"] == 0


@pytest.mark.parametrize("status,error", [
    (403, {"type": "insufficient_scope", "message": "insufficient_scope",
           "description": "The request requires higher privileges than provided by the access token"}),
    (401, {"type": "UNAUTHORIZED_ERROR", "message": "Empresa inativa", "description": "Empresa inativa"}),
])
def test_an_api_refusal_of_the_authorization_flags_the_fleet(bling, status, error, capsys):
    api = FakeApi(lambda n: (status, json.dumps({"error": error}).encode(), {}))
    try:
        capsys.readouterr()
        with pytest.raises(Exception) as first:
            new_client(new_token_store()).get("/nfe")
        with pytest.raises(Exception) as second:
            new_client(new_token_store()).get("/nfe")
    finally:
        api.stop()

    from shared.errors import AuthorizationBroken

    assert isinstance(first.value, AuthorizationBroken) and not isinstance(first.value, PermanentError)
    assert isinstance(second.value, AuthorizationBroken)
    assert len(api.arrivals) == 1  # the second call never reached Bling
    assert bling.stats()["token_calls"] == 0
    assert token_doc()["authorization_broken"] is True
    assert len(_errors(capsys.readouterr().out)) == 1


def _message(data: str, message_id: str):
    from shared.messages import PubSubMessage

    return PubSubMessage(data=data.encode(), attributes={}, message_id=message_id, delivery_attempt=1)


def _cloud_event(data: dict, message_id: str) -> dict:
    """A push envelope as Pub/Sub delivers it (functions-framework hands the handler its data)."""
    import base64

    return {"message": {"data": base64.b64encode(json.dumps(data).encode()).decode(), "messageId": message_id,
                        "attributes": {}}}


@pytest.mark.parametrize("error_name", ["AuthorizationBroken", "ConfigurationError"])
def test_the_handler_parks_authorization_and_configuration_errors_with_their_reason(firestore_env, error_name):
    import shared.errors as errors

    def handle(message):
        raise getattr(errors, error_name)("BLING_CLIENT_SECRET is not configured")

    on_event = pubsub_handler("detail", lambda: parked_collection())(handle)
    on_event(_cloud_event({"run_id": "r"}, f"msg-{error_name}"))  # acknowledged: not raised

    parked = [s.to_dict() for s in parked_collection().stream()]
    assert len(parked) == 1 and parked[0]["reason"] == error_name
    assert "BLING_CLIENT_SECRET" in parked[0]["detail"]


def test_configuration_and_authorization_errors_are_neither_retryable_nor_permanent():
    from shared.errors import AuthorizationBroken, ConfigurationError

    for cls in (AuthorizationBroken, ConfigurationError):
        assert not issubclass(cls, (PermanentError, RetryableError))


def test_detail_and_lister_park_their_messages_when_the_client_secret_is_refused(sandbox, db_env, firestore_env,
                                                                                 pubsub_topology, postgres):
    """The real handlers: before, detail marked every invoice 'failed' (one token call each) and the lister the
    window 'failed', both acknowledged, and those months were never retried."""
    import datetime

    from shared import audit
    from shared.messages import NoteRef, Window
    from tests.integration.data.pipeline_driver import envelope, handler, rows

    set_env(BLING_RATE_BUDGET_PER_S=28)
    server = sandbox("small", rate_per_s=30.0)
    store_pair(server, expires_in=30)  # the access token is spent: the first call must refresh
    truth = server.truth()
    january = sorted(i for i, n in truth["nfe"].items() if n["tipo"] == 1 and n["dataEmissao"].startswith("2026-01"))
    notes = [NoteRef(id=i, situacao=truth["nfe"][i]["situacao"]) for i in january[:3]]
    window = Window("r-broken", datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    audit.ensure_window(account_db(), window)
    audit.record_listed(account_db(), window, notes)
    set_env(BLING_CLIENT_SECRET="the-secret-before-it-was-regenerated")
    server.reset_stats()

    handler("detail")(envelope({"run_id": window.run_id, "window": window.key,
                                "notes": [{"id": n.id, "situacao": n.situacao} for n in notes]}, "detail-1"))
    handler("lister")(envelope(window.to_json(), "lister-1"))

    assert server.stats()["token_calls"] == 1  # detail's first invoice; the flag stopped everything after it
    parked = {s.id: s.to_dict() for s in parked_collection().stream()}
    assert set(parked) == {"detail-1", "lister-1"}
    assert {p["reason"] for p in parked.values()} == {"BlingAuthorizationBroken"}
    failed = rows(postgres, "SELECT count(*) FROM etl_window_nfe WHERE run_id = %s AND resultado = 'failed'",
                  (window.run_id,))
    assert [tuple(r) for r in failed] == [(0,)]
    status = rows(postgres, "SELECT status FROM etl_window WHERE run_id = %s", (window.run_id,))
    assert [tuple(r) for r in status] != [("failed",)]

    set_env(BLING_CLIENT_SECRET=server.client_secret)
    new_token_store().get_valid_access_token()  # the right secret deployed: one try clears the flag, work released
    assert list(parked_collection().stream()) == []
    assert len(pubsub_topology.pull("bling-nfe")) == 1 and len(pubsub_topology.pull("bling-windows")) == 1
    record("authorization or configuration broken",
           fault="the Bling app's client secret regenerated (token endpoint answers invalid_client) while a detail "
                 "batch of 3 invoices and a lister window arrive",
           outcome="1 token call, then 0 while the fleet-wide flag stood; both messages parked (0 invoices or "
                   "windows marked failed, nothing dropped); after the right secret was deployed, one try cleared "
                   "the flag and both messages were published again",
           ok=True)
