"""Contacts, products, payment forms: spec shapes and the product-listing quirks."""
from __future__ import annotations

import requests

from local.sandbox.dataset import PRODUCT_LIST_KEYS
from tests.integration.sandbox.helpers import Api
from tests.integration.sandbox.spec_utils import properties, required


def test_contact_detail_shape(api: Api, spec):
    truth = api.server.truth()
    cid = next(iter(truth["contacts"]))
    contact = api.data(f"/contatos/{cid}")
    props = {**properties(spec, "ContatosDadosBaseDTO"), **properties(spec, "ContatosDadosDTO")}
    assert set(contact) == set(props)
    assert set(required(spec, "ContatosDadosBaseDTO")) <= set(contact)
    assert set(contact["endereco"]) == {"geral", "cobranca"}
    assert set(contact["endereco"]["geral"]) == set(props["endereco"]["properties"]["geral"]["properties"])
    assert contact == truth["contacts"][cid]


def test_nasty_contact_round_trips(api: Api):
    truth = api.server.truth()
    nasty = next(c for c in truth["contacts"].values() if "DROP TABLE" in c["nome"])
    r = api.get(f"/contatos/{nasty['id']}")
    assert r.json()["data"]["nome"] == "O'Brien'); DROP TABLE nfe;--"
    assert "São" in r.content.decode("utf-8") or "Açaí" in str(truth["contacts"])


def test_payment_form_shape(api: Api, spec):
    truth = api.server.truth()
    props = {**properties(spec, "FormasPagamentosDadosBaseDTO"), **properties(spec, "FormasPagamentosDadosDTO")}
    enum = set(props["tipoPagamento"]["enum"])
    for fid, form in truth["payment_forms"].items():
        got = api.data(f"/formas-pagamentos/{fid}")
        assert set(got) == set(props)
        assert got["tipoPagamento"] in enum and got == form
    assert {17, 15, 3, 1} <= {f["tipoPagamento"] for f in truth["payment_forms"].values()}


def test_product_detail_and_list_shapes(api: Api, spec):
    truth = api.server.truth()
    detail_props = properties(spec, "ProdutosDadosDTO")
    list_props = properties(spec, "ProdutosDadosBaseDTO")
    parent = next(p for p in truth["products"].values() if p["formato"] == "V")
    got = api.data(f"/produtos/{parent['id']}")
    assert set(got) <= set(detail_props) and "precoCusto" not in got  # cost only under fornecedor
    assert set(required(spec, "ProdutosDadosDTO")) <= set(got)
    assert got["variacoes"] and all(v["variacao"]["produtoPai"]["id"] == parent["id"] for v in got["variacoes"])
    child_code = got["variacoes"][0]["codigo"]
    item = api.data("/produtos", {"codigos[]": child_code, "criterio": 5})[0]
    assert set(item) <= set(list_props) and item["idProdutoPai"] == parent["id"]
    assert list(item) == [k for k in PRODUCT_LIST_KEYS if k in item]
    assert item["precoCusto"] == truth["products"][item["id"]]["fornecedor"]["precoCusto"]


def test_codigos_filter_with_criterio_todos(api: Api):
    truth = api.server.truth()
    products = list(truth["products"].values())
    codes = [products[0]["codigo"], "PARAF 3/8"]
    got = api.data("/produtos", {"codigos[]": codes, "criterio": 5})
    assert sorted(p["codigo"] for p in got) == sorted(codes)
    # Indexed PHP array syntax works too.
    assert api.data("/produtos", {"codigos[0]": codes[0], "criterio": 5})[0]["codigo"] == codes[0]


def test_default_criterio_is_recent_and_active_only(api: Api):
    truth = api.server.truth()
    meta = truth["product_meta"]
    default = {p["id"] for p in api.data("/produtos")}
    recent = {pid for pid, m in meta.items() if m["created_at"] >= "2026-01-30" and not m["deleted"]
              and truth["products"][pid]["situacao"] == "A"}
    assert default == recent and default
    assert len(api.data("/produtos", {"criterio": 5})) == min(100, len(truth["products"]))
    inactive = next(pid for pid, p in truth["products"].items() if p["situacao"] == "I" and not meta[pid]["deleted"])
    deleted = next(pid for pid, m in meta.items() if m["deleted"])
    code_i, code_d = truth["products"][inactive]["codigo"], truth["products"][deleted]["codigo"]
    assert api.data("/produtos", {"codigos[]": code_i}) == []
    assert api.data("/produtos", {"codigos[]": code_i, "criterio": 2}) == []
    assert [p["id"] for p in api.data("/produtos", {"codigos[]": code_i, "criterio": 3})] == [inactive]
    assert [p["id"] for p in api.data("/produtos", {"codigos[]": code_d, "criterio": 4})] == [deleted]
    assert api.data("/produtos", {"codigos[]": code_d, "criterio": 3}) == []
    assert [p["id"] for p in api.data("/produtos", {"codigos[]": code_d, "criterio": 5})] == [deleted]
    assert api.get("/produtos", {"criterio": 9}).status_code == 400


def test_singular_codigo_is_ignored(api: Api):
    truth = api.server.truth()
    wanted = truth["products"][min(truth["products"])]["codigo"]  # oldest: last in the id-desc order
    everything = api.data("/produtos", {"criterio": 5, "limite": 5})
    ignored = api.data("/produtos", {"codigo": wanted, "criterio": 5, "limite": 5})
    assert ignored == everything and len(ignored) == 5
    assert wanted not in {p["codigo"] for p in ignored}


def test_unknown_sku_gives_empty_data(api: Api):
    truth = api.server.truth()
    for sku in truth["unknown_skus"]:
        assert api.data("/produtos", {"codigos[]": sku, "criterio": 5}) == []


def test_product_pagination(api: Api):
    truth = api.server.truth()
    seen = []
    page = 1
    while chunk := api.data("/produtos", {"criterio": 5, "limite": 7, "pagina": page}):
        seen += [p["id"] for p in chunk]
        page += 1
    assert sorted(seen) == sorted(truth["products"]) and seen == sorted(seen, reverse=True)
    assert api.get("/produtos", {"limite": 101}).status_code == 400


def test_unknown_path_and_method(api: Api):
    r = api.get("/pedidos/vendas")
    assert r.status_code == 404 and r.json()["error"]["type"] == "RESOURCE_NOT_FOUND"
    r = api.session.post(api.server.api_base + "/nfe", json={}, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["type"] == "METHOD_NOT_ALLOWED"
    r = requests.get(api.server.url + "/somewhere", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["type"] == "RESOURCE_NOT_FOUND"
