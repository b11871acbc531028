"""Enrichment: the contacts and products that stored invoices reference, fetched only when missing or stale.

Contacts: GET /contatos/{id}; a 404 is stored as encontrado=false so it is not asked again every day.

Products: NF-e items carry only the SKU (`codigo`), so SKUs are resolved with
GET /produtos?codigos[]=A&codigos[]=B…&criterio=5 (5 = all: active, inactive and deleted; the default criterion
only returns recently created ones). A result is accepted only when its `codigo` equals the SKU exactly — Bling
may return near matches, and the singular `codigo=` parameter other integrations used is ignored by Bling, which
then returns an unrelated page. SKUs still unknown are asked once more per stock filter (the spec says
`filtroSaldoEstoque` defaults to "positive"; whether Bling applies that default is unverified, and a product out
of stock must not be reported unknown). What is still unknown is recorded as such, never guessed. A resolved
product's full record comes from GET /produtos/{id}.

Invoices of one backfill share customers and products, and their enrich messages run concurrently, so each contact or
SKU is claimed first (a Firestore document `<account>|<kind>:<key>`, created by exactly one message, expiring after a
few minutes; one account's contact 42 is not another's): only the claimant calls Bling for it, and releases the claim
when done. A claim names its owner, the Pub/Sub message id, which stays the same across redeliveries: an instance killed
mid-work (OOM, SIGKILL) never releases its claims, and the redelivery of its message, seconds later, takes them over
instead of acknowledging with the work undone; another message still leaves a live claim alone (its owner will do the
work, or its own redelivery will). A claim whose owner is gone for good expires.

A contact or SKU whose own Bling call fails transiently is set aside without blocking the others of the message
(shared.record_failures; functions/enrich).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as google_exceptions

from shared import db, jsonutil, log, record_failures, topology
from shared.bling.api import BlingApi
from shared.bling.errors import BlingNotFound
from shared.bling.paging import PagingIncomplete, paginate
from shared.bling_values import as_decimal, as_id, as_int, as_text, nested
from shared.db import SchemaDb
from shared.domain import EntityKind

_SKUS_PER_LOOKUP = 50
_LOOKUP_PAGE_SIZE = 100
_LOOKUP_PAGE_CAP = 10
# Extra passes for SKUs the default lookup did not find: zero stock, then negative stock.
_STOCK_FILTER_RETRIES = ("0", "2")


K = TypeVar("K", int, str)
# The kinds of entity enriched: the claims' kinds, and the first half of a record's key in record_failures.
CONTACT, SKU = EntityKind.CONTACT, EntityKind.SKU


def _claim_doc(claims: Any, account: str, kind: str, key: str) -> Any:
    return claims.document(f"{account}|{kind}:{key}".replace("/", "%2F"))


def claim(claims: Any, account: str, kind: str, key: str, owner: str) -> bool:
    """True when the message `owner` may fetch the entity of `account` now (a new claim, its own, or an expired
    one); False when another message holds a live claim on it. `claims`: the collection topology.ENRICH_CLAIMS."""
    now = datetime.datetime.now(tz=datetime.UTC)
    doc = _claim_doc(claims, account, kind, key)
    fields = {"claimed_at": now, "expire_at": topology.ENRICH_CLAIMS.expire_at(now), "owner": owner}
    try:
        doc.create(fields)
        return True
    except google_exceptions.AlreadyExists:
        snapshot = doc.get()
        held = (snapshot.to_dict() or {}) if snapshot.exists else {}
        expire_at = held.get("expire_at")
        # Expired: a dead claimant's leftover (TTL deletion lags). Our own: a redelivery after a crash.
        if expire_at is None or expire_at < now or held.get("owner") == owner:
            doc.set(fields)
            if held.get("owner") == owner:
                log.info("claim taken over from an earlier delivery of this message", event="claim_taken_over",
                         claim_kind=kind, claim_key=key)
            return True
        return False


def release(claims: Any, account: str, kind: str, key: str) -> None:
    """When the fetch is over (stored or failed): from then on the database's freshness decides."""
    _claim_doc(claims, account, kind, key).delete()


def _stale_before(max_age_days: int) -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=max_age_days)


def stale_contacts(database: SchemaDb, contact_ids: Iterable[int], max_age_days: int) -> list[int]:
    """The contacts not stored, or stored longer ago than max_age_days, sorted."""
    ids = sorted(set(contact_ids))
    if not ids:
        return []
    fresh = {row[0] for row in database.fetch_all("SELECT id FROM contato WHERE id = ANY(%s) AND atualizado_em >= %s",
                                             (ids, _stale_before(max_age_days)))}
    return [i for i in ids if i not in fresh]


def stale_skus(database: SchemaDb, skus: Iterable[str], max_age_days: int) -> list[str]:
    """The SKUs never resolved, or resolved longer ago than max_age_days, sorted."""
    wanted = sorted(set(skus))
    if not wanted:
        return []
    fresh = {row[0] for row in database.fetch_all(
        "SELECT codigo FROM produto_sku WHERE codigo = ANY(%s) AND verificado_em >= %s",
        (wanted, _stale_before(max_age_days)))}
    return [s for s in wanted if s not in fresh]


@contextlib.contextmanager
def claimed(claims: Any, account: str, kind: EntityKind, keys: Iterable[K], owner: str) -> Iterator[list[K]]:
    """The whole life of this delivery's claims: the keys it may fetch now (claim()), released when the block
    ends however it ends. A claim covers the fetch in flight only: once stored, freshness in the database decides;
    after a failure, the redelivery of the message (or the retry of one record) must not be blocked by it."""
    taken: list[K] = []
    try:
        taken.extend(k for k in keys if claim(claims, account, kind, str(k), owner))
        yield taken
    finally:
        for key in taken:
            release(claims, account, kind, str(key))


def load_contact(bling: BlingApi, database: SchemaDb, contact_id: int) -> bool:
    try:
        contact = bling.get(f"/contatos/{contact_id}").get("data")
    except BlingNotFound:
        contact = None
    if not isinstance(contact, dict) or as_int(contact.get("id")) != contact_id:
        log.warning("contact not found in Bling; recorded as not found", contato_id=contact_id)
        _store_contact(database, contact_id, None)
        return False
    _store_contact(database, contact_id, contact)
    return True


def contact_row(contact_id: int, contact: dict[str, Any] | None) -> dict[str, Any]:
    """The contato row of GET /contatos/{id}'s data (None: Bling does not have it, recorded as not found)."""
    c = contact or {}
    geral = nested(c, "endereco", "geral") or {}
    return {
        "id": contact_id, "encontrado": contact is not None, "nome": as_text(c.get("nome")),
        "codigo": as_text(c.get("codigo")), "situacao": as_text(c.get("situacao")),
        "numero_documento": as_text(c.get("numeroDocumento")), "telefone": as_text(c.get("telefone")),
        "celular": as_text(c.get("celular")), "fantasia": as_text(c.get("fantasia")), "tipo": as_text(c.get("tipo")),
        "indicador_ie": as_int(c.get("indicadorIe")), "ie": as_text(c.get("ie")), "rg": as_text(c.get("rg")),
        "inscricao_municipal": as_text(c.get("inscricaoMunicipal")), "email": as_text(c.get("email")),
        "email_nota_fiscal": as_text(c.get("emailNotaFiscal")), "endereco": as_text(geral.get("endereco")),
        "numero": as_text(geral.get("numero")), "complemento": as_text(geral.get("complemento")),
        "bairro": as_text(geral.get("bairro")), "cep": as_text(geral.get("cep")),
        "municipio": as_text(geral.get("municipio")), "uf": as_text(geral.get("uf")),
        "pais": as_text(nested(c, "pais", "nome")), "vendedor_id": as_id(nested(c, "vendedor", "id")),
        "raw": jsonutil.dumps(contact) if contact is not None else None,
    }


def _store_contact(database: SchemaDb, contact_id: int, contact: dict[str, Any] | None) -> None:
    with database.transaction() as cur:
        db.upsert(cur, "contato", contact_row(contact_id, contact), casts={"raw": "jsonb"})


# Longer than any Bling product code: such an item SKU is recorded as unknown without a lookup (50 of them in one
# query string would also be longer than a server accepts).
MAX_LOOKUP_SKU_LENGTH = 120


@dataclasses.dataclass
class SkuLookup:
    """found: SKU → list item of the product whose codigo is exactly that SKU (only exact matches). undecided:
    SKUs not found by a lookup that could not be completed (PagingIncomplete): neither found nor unknown."""

    found: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    undecided: set[str] = dataclasses.field(default_factory=set)

    def decided(self, sku: str) -> bool:
        return sku not in self.undecided


def find_products_by_sku(bling: BlingApi, skus: list[str], attempts: record_failures.Attempts) -> SkuLookup:
    """The exact matches of the SKUs, over the default lookup and then the stock filters.

    A lookup that fails transiently sets its SKUs aside in `attempts`, keyed (SKU, sku): they are neither found
    nor unknown, not asked again in a later pass of this call, and never recorded unknown. One that cannot be
    completed leaves the SKUs it did not find undecided, with one ERROR."""
    lookup = SkuLookup()
    found = lookup.found
    skus = [s for s in skus if len(s) <= MAX_LOOKUP_SKU_LENGTH]
    for extra in [None, *_STOCK_FILTER_RETRIES]:
        missing = [s for s in skus if s not in found and attempts.settled((SKU, s)) and lookup.decided(s)]
        for start in range(0, len(missing), _SKUS_PER_LOOKUP):
            chunk = missing[start:start + _SKUS_PER_LOOKUP]
            items, complete = attempts.run(functools.partial(_lookup, bling, chunk, extra),
                                           *((SKU, s) for s in chunk)) or ([], True)
            for item in items:
                sku = item.get("codigo")
                if sku in chunk and _preferred(item, found.get(sku)):
                    found[sku] = item
            if not complete:
                lookup.undecided.update(s for s in chunk if s not in found)
        if all(s in found or not attempts.settled((SKU, s)) or not lookup.decided(s) for s in skus):
            break
    return lookup


def _preferred(candidate: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Two products with one SKU: prefer the active one, then the lowest id, so the choice is stable."""
    if current is None:
        return True
    def rank(product: dict[str, Any]) -> tuple[bool, int]:
        return product.get("situacao") != "A", as_int(product.get("id")) or 0

    return rank(candidate) < rank(current)


def _lookup(bling: BlingApi, skus: list[str], stock_filter: str | None) -> tuple[list[dict[str, Any]], bool]:
    """The products GET /produtos lists for these SKUs, every page (shared.bling.paging), and whether the listing
    was complete. One that is not (page cap, a repeated page) keeps what it found and says so in one ERROR: an
    exact match found is still right, and only a complete lookup may call a SKU unknown."""
    def fetch(page: int) -> Any:
        params = [("codigos[]", s) for s in skus] + [("criterio", "5"), ("pagina", str(page)),
                                                    ("limite", str(_LOOKUP_PAGE_SIZE))]
        if stock_filter is not None:
            params.append(("filtroSaldoEstoque", stock_filter))
        return bling.get("/produtos", params).get("data")

    items: dict[int, dict[str, Any]] = {}
    try:
        for page in paginate(fetch, _LOOKUP_PAGE_CAP, what="product lookup"):
            items.update((product_id, d) for d in page.items
                         if isinstance(d, dict) and (product_id := as_id(d.get("id"))) and product_id not in items)
    except PagingIncomplete as exc:
        log.error(f"product lookup incomplete; the SKUs it did not find stay unresolved: {exc}",
                  event="sku_lookup_incomplete", skus=skus[:50], **exc.log_fields())
        return list(items.values()), False
    return list(items.values()), True


def load_product(bling: BlingApi, database: SchemaDb, sku: str, listed: dict[str, Any] | None) -> bool:
    """Store the product behind a SKU (full record) or record the SKU as unknown to Bling."""
    if listed is None:
        _store_sku(database, sku, None)
        log.warning("SKU unknown to Bling; recorded as not found", sku=sku, event="sku_unknown")
        return False
    product_id = as_id(listed.get("id"))
    assert product_id is not None, "a lookup keeps only items with an id (_lookup)"
    try:
        detail = bling.get(f"/produtos/{product_id}").get("data")
    except BlingNotFound:
        detail = None
    if not isinstance(detail, dict) or as_id(detail.get("id")) != product_id or detail.get("codigo") != sku:
        detail = None
    _store_product(database, product_id, listed, detail)
    _store_sku(database, sku, product_id)
    return True


def product_row(product_id: int, listed: dict[str, Any], detail: dict[str, Any] | None) -> dict[str, Any]:
    """The produto row: from GET /produtos/{id} when it answered, else from the lookup's list item."""
    p = detail or listed
    cost = nested(p, "fornecedor", "precoCusto") if detail else listed.get("precoCusto")
    return {
        "id": product_id, "codigo": as_text(p.get("codigo")), "nome": as_text(p.get("nome")),
        "tipo": as_text(p.get("tipo")), "situacao": as_text(p.get("situacao")), "formato": as_text(p.get("formato")),
        "preco": as_decimal(p.get("preco")), "preco_custo": as_decimal(cost), "unidade": as_text(p.get("unidade")),
        "gtin": as_text(p.get("gtin")), "marca": as_text(p.get("marca")),
        "ncm": as_text(nested(p, "tributacao", "ncm")), "cest": as_text(nested(p, "tributacao", "cest")),
        "categoria_id": as_id(nested(p, "categoria", "id")),
        "id_produto_pai": as_id(listed.get("idProdutoPai")) or as_id(nested(p, "variacao", "produtoPai", "id")),
        "descricao_curta": as_text(p.get("descricaoCurta")), "raw": jsonutil.dumps(p),
    }


def _store_product(database: SchemaDb, product_id: int, listed: dict[str, Any], detail: dict[str, Any] | None
                   ) -> None:
    with database.transaction() as cur:
        db.upsert(cur, "produto", product_row(product_id, listed, detail), casts={"raw": "jsonb"})


def _store_sku(database: SchemaDb, sku: str, product_id: int | None) -> None:
    with database.transaction() as cur:
        db.upsert(cur, "produto_sku", {"codigo": sku, "produto_id": product_id, "encontrado": product_id is not None},
                  key="codigo", touch="verificado_em")
