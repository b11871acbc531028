"""The messages that travel between functions, and their strict decoding.

Every decoder raises BadMessage with a reason a human can act on; handlers log it with the raw input and
acknowledge (shared.handler). Encoders produce plain JSON so a message can also be typed by hand with
`gcloud pubsub topics publish`.

Every message names the Bling account it is for: `"account": "<slug>"` (docs/decisions/011), written by every
encoder once the account is known (always, inside the pipeline), and by publishers as the Pub/Sub attribute
`account` too. It is optional in the JSON: a message without it (today's hand-typed commands, a message published
before the upgrade) runs when exactly one account is active (shared.account_registry.resolve).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
from typing import Any

from shared.accounts import parse_account_id
from shared.domain import MAX_ID, MAX_SITUACAO, is_positive_int, parse_window_key, window_key
from shared.errors import BadMessage


@dataclasses.dataclass(frozen=True)
class PubSubMessage:
    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: str = ""
    delivery_attempt: int | None = None

    @classmethod
    def from_cloud_event(cls, cloud_event: Any) -> PubSubMessage:
        """Read only data/attributes/messageId: the fields both Eventarc and a raw push carry."""
        envelope = cloud_event.data if hasattr(cloud_event, "data") else cloud_event
        message = (envelope or {}).get("message") or {}
        raw = message.get("data") or ""
        try:
            data = base64.b64decode(raw, validate=True) if raw else b""
        except (binascii.Error, ValueError) as exc:
            raise BadMessage(f"message data is not base64: {exc}") from None
        attempt = envelope.get("deliveryAttempt") if isinstance(envelope, dict) else None
        return cls(data=data, attributes=dict(message.get("attributes") or {}),
                   message_id=str(message.get("messageId") or message.get("message_id") or ""),
                   publish_time=str(message.get("publishTime") or ""),
                   delivery_attempt=int(attempt) if isinstance(attempt, int) else None)

    def text_for_log(self, limit: int = 500) -> str:
        return self.data[:limit].decode("utf-8", errors="replace")

    def named_account(self) -> str | None:
        """The account this message names (its `account` attribute, else the JSON's `account` key) when that is
        a valid slug; None otherwise. For parking, before or without a full decode."""
        named = self.attributes.get(ACCOUNT_KEY)
        if named is None:
            try:
                named = decode_json_object(self.data).get(ACCOUNT_KEY)
            except BadMessage:
                return None
        try:
            return parse_account_id(named)
        except ValueError:
            return None


# The key of the account in every JSON message, and the name of the Pub/Sub attribute that repeats it.
ACCOUNT_KEY = "account"


def parse_account(body: dict[str, Any]) -> str | None:
    """The message's `account` (None when it names none); BadMessage when it is not a slug."""
    if ACCOUNT_KEY not in body:
        return None
    try:
        return parse_account_id(body[ACCOUNT_KEY])
    except ValueError as exc:
        raise BadMessage(f"account: {exc}") from None


def with_account(payload: dict[str, Any], account: str | None) -> dict[str, Any]:
    """The encoded message, with its account when known."""
    return {**payload, ACCOUNT_KEY: account} if account is not None else payload


def decode_json_object(data: bytes) -> dict[str, Any]:
    if not data or not data.strip():
        raise BadMessage("message is empty; expected a JSON object")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"message is not JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested brackets: not a message any topic carries
        raise BadMessage("message is not JSON we accept: nested too deeply") from None
    if not isinstance(value, dict):
        raise BadMessage(f"message must be a JSON object, got {type(value).__name__}")
    return value


def _require_only(body: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()) -> None:
    missing = required - body.keys()
    unknown = body.keys() - required - optional
    if missing:
        raise BadMessage(f"missing keys: {sorted(missing)}")
    if unknown:
        raise BadMessage(f"unknown keys: {sorted(unknown)}")


def parse_iso_date(value: Any, what: str) -> datetime.date:
    if not isinstance(value, str):
        raise BadMessage(f"{what} must be a date string YYYY-MM-DD, got {value!r}")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise BadMessage(f"{what} is not a valid date YYYY-MM-DD: {value!r}") from None


def _str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value or len(value) > 200:
        raise BadMessage(f"{key} must be a non-empty string, got {value!r}")
    return value


_OPTIONAL = frozenset({ACCOUNT_KEY})


# SKUs come from the items of stored invoices, whatever their length; the enrich function does not look up in
# Bling the ones longer than any product code (shared.enrichment.MAX_LOOKUP_SKU_LENGTH).
MAX_SKU_LENGTH = 2000


def _positive_int(value: Any, what: str, maximum: int = MAX_ID) -> int:
    if not is_positive_int(value, maximum):
        raise BadMessage(f"{what} must be a positive integer up to {maximum}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Window:
    """A closed range of emission dates (São Paulo calendar days) that the lister pages through."""

    run_id: str
    start: datetime.date
    end: datetime.date
    account: str | None = None

    @property
    def key(self) -> str:
        return window_key(self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        return with_account({"run_id": self.run_id, "start": self.start.isoformat(), "end": self.end.isoformat()},
                            self.account)

    @classmethod
    def parse(cls, data: bytes) -> Window:
        body = decode_json_object(data)
        _require_only(body, {"run_id", "start", "end"}, _OPTIONAL)
        window = cls(run_id=_str(body, "run_id"), start=parse_iso_date(body["start"], "start"),
                     end=parse_iso_date(body["end"], "end"), account=parse_account(body))
        if window.end < window.start:
            raise BadMessage(f"window end {window.end} is before start {window.start}")
        if (window.end - window.start).days > 365:
            raise BadMessage(f"window {window.key} is longer than Bling's one-year limit")
        return window


def _window_key(body: dict[str, Any]) -> str:
    """A batch's window must be a Window.key (YYYY-MM-DD..YYYY-MM-DD, end not before start): the audit row of
    each invoice is found by it, after Bling was already asked for the invoice."""
    key = _str(body, "window")
    try:
        parse_window_key(key)
    except ValueError as exc:
        raise BadMessage(f"window is not YYYY-MM-DD..YYYY-MM-DD ending on or after its start: {exc}") from None
    return key


@dataclasses.dataclass(frozen=True)
class NoteRef:
    """An NF-e as the list shows it: enough to decide whether its detail must be fetched."""

    id: int
    situacao: int


@dataclasses.dataclass(frozen=True)
class NfeBatch:
    run_id: str
    window: str
    notes: tuple[NoteRef, ...]
    account: str | None = None

    def to_json(self) -> dict[str, Any]:
        return with_account({"run_id": self.run_id, "window": self.window,
                             "notes": [{"id": n.id, "situacao": n.situacao} for n in self.notes]}, self.account)

    @classmethod
    def parse(cls, data: bytes) -> NfeBatch:
        body = decode_json_object(data)
        _require_only(body, {"run_id", "window", "notes"}, _OPTIONAL)
        notes = body["notes"]
        if not isinstance(notes, list) or not notes or len(notes) > 1000:
            raise BadMessage("notes must be a non-empty list of {id, situacao}")
        refs = []
        for note in notes:
            if not isinstance(note, dict) or set(note) != {"id", "situacao"}:
                raise BadMessage(f"each note must be {{id, situacao}}, got {note!r}")
            refs.append(NoteRef(id=_positive_int(note["id"], "note id"),
                                situacao=_positive_int(note["situacao"], "note situacao", MAX_SITUACAO)))
        return cls(run_id=_str(body, "run_id"), window=_window_key(body), notes=tuple(refs),
                   account=parse_account(body))


@dataclasses.dataclass(frozen=True)
class EnrichRequest:
    run_id: str
    contact_ids: tuple[int, ...]
    skus: tuple[str, ...]
    account: str | None = None

    def to_json(self) -> dict[str, Any]:
        return with_account({"run_id": self.run_id, "contact_ids": list(self.contact_ids), "skus": list(self.skus)},
                            self.account)

    @classmethod
    def parse(cls, data: bytes) -> EnrichRequest:
        body = decode_json_object(data)
        _require_only(body, {"run_id", "contact_ids", "skus"}, _OPTIONAL)
        contact_ids, skus = body["contact_ids"], body["skus"]
        if not isinstance(contact_ids, list) or not isinstance(skus, list):
            raise BadMessage("contact_ids and skus must be lists")
        if not contact_ids and not skus:
            raise BadMessage("nothing to enrich: contact_ids and skus are both empty")
        for sku in skus:
            if not isinstance(sku, str) or not sku.strip() or len(sku) > MAX_SKU_LENGTH:
                shown = sku[:200] if isinstance(sku, str) else sku
                raise BadMessage(f"each sku must be a non-empty string of at most {MAX_SKU_LENGTH} characters, "
                                 f"got {shown!r}")
        ids = tuple(_positive_int(c, "contact id") for c in contact_ids)
        return cls(run_id=_str(body, "run_id"), contact_ids=ids, skus=tuple(skus), account=parse_account(body))
