"""Messages between functions: round trips, and strict refusal of malformed ones."""
import base64
import datetime

import pytest

from shared.errors import BadMessage
from shared.messages import EnrichRequest, NfeBatch, NoteRef, PubSubMessage, Window


def test_window_round_trip_and_key():
    window = Window("run-1", datetime.date(2021, 3, 1), datetime.date(2021, 3, 31))
    assert Window.parse(str(window.to_json()).replace("'", '"').encode()) == window
    assert window.key == "2021-03-01..2021-03-31"


def test_nfe_batch_round_trip():
    batch = NfeBatch("run-1", "2021-03-01..2021-03-31", (NoteRef(11, 6), NoteRef(12, 2)))
    import json
    assert NfeBatch.parse(json.dumps(batch.to_json()).encode()) == batch


@pytest.mark.parametrize("parser, text", [
    (Window, '{"run_id": "r", "start": "2021-03-31", "end": "2021-03-01"}'),
    (Window, '{"run_id": "r", "start": "2021-01-01", "end": "2022-06-01"}'),
    (Window, '{"run_id": "", "start": "2021-03-01", "end": "2021-03-02"}'),
    (Window, '{"run_id": "r", "start": "2021-03-01", "end": "2021-03-02", "x": 1}'),
    (NfeBatch, '{"run_id": "r", "window": "w", "notes": []}'),
    (NfeBatch, '{"run_id": "r", "window": "w", "notes": [{"id": "12", "situacao": 6}]}'),
    (NfeBatch, '{"run_id": "r", "window": "w", "notes": [{"id": true, "situacao": 6}]}'),
    (NfeBatch, '{"run_id": "r", "window": "w", "notes": [{"id": -4, "situacao": 6}]}'),
    (NfeBatch, '{"run_id": "r", "window": "w", "notes": null}'),
    (EnrichRequest, '{"run_id": "r", "contact_ids": [], "skus": []}'),
    (EnrichRequest, '{"run_id": "r", "contact_ids": ["a"], "skus": []}'),
    (EnrichRequest, '{"run_id": "r", "contact_ids": [], "skus": [""]}'),
    (EnrichRequest, '{"run_id": "r", "contact_ids": null, "skus": ["A"]}'),
])
def test_malformed_messages_are_bad_messages(parser, text):
    with pytest.raises(BadMessage):
        parser.parse(text.encode())


def test_pubsub_envelope_is_decoded_from_the_push_body():
    data = base64.b64encode(b'{"month": "2021-03"}').decode()
    message = PubSubMessage.from_cloud_event({"message": {"data": data, "messageId": "42", "attributes": {"a": "b"}},
                                              "deliveryAttempt": 3})
    assert (message.data, message.message_id, message.attributes, message.delivery_attempt) == (
        b'{"month": "2021-03"}', "42", {"a": "b"}, 3)


def test_pubsub_envelope_with_data_that_is_not_base64_is_a_bad_message():
    with pytest.raises(BadMessage):
        PubSubMessage.from_cloud_event({"message": {"data": "***", "messageId": "1"}})


@pytest.mark.parametrize("message", [
    Window("run-1", datetime.date(2021, 3, 1), datetime.date(2021, 3, 31), "lojas-stilli"),
    NfeBatch("run-1", "2021-03-01..2021-03-31", (NoteRef(11, 6),), "lojas-stilli"),
    EnrichRequest("run-1", (7,), ("SKU-1",), "lojas-stilli"),
])
def test_every_message_carries_its_account_and_one_without_it_still_decodes(message):
    import dataclasses
    import json

    body = message.to_json()
    assert body["account"] == "lojas-stilli"
    assert type(message).parse(json.dumps(body).encode()) == message
    legacy = {k: v for k, v in body.items() if k != "account"}  # published before issue 14, or typed by hand
    assert type(message).parse(json.dumps(legacy).encode()) == dataclasses.replace(message, account=None)


@pytest.mark.parametrize("account", ["Lojas", "lojas_stilli", "", 7, None, "a" * 41])
def test_an_account_that_is_not_a_slug_is_bad_input(account):
    import json

    body = {"run_id": "r", "start": "2021-03-01", "end": "2021-03-02", "account": account}
    with pytest.raises(BadMessage, match="account"):
        Window.parse(json.dumps(body).encode())


def test_the_account_a_message_names_for_parking():
    named = PubSubMessage(b'{"account": "loja-a"}', {}, "m")
    assert named.named_account() == "loja-a"
    assert PubSubMessage(b"{}", {"account": "loja-b"}, "m").named_account() == "loja-b"  # the attribute first
    assert PubSubMessage(b"not json", {}, "m").named_account() is None
    assert PubSubMessage(b'{"account": "Not A Slug"}', {}, "m").named_account() is None
