"""GET /nfe and GET /nfe/{id}: filters, date bounds, pagination, and the spec's field names."""
from __future__ import annotations

import requests

from local.sandbox.dataset import NFE_LIST_KEYS
from tests.integration.sandbox.helpers import Api
from tests.integration.sandbox.spec_utils import properties


def list_all(api: Api, limite: int = 5, **params) -> list[dict]:
    out, page = [], 1
    while True:
        data = api.data("/nfe", {**params, "pagina": page, "limite": limite})
        if not data:
            return out
        out += data
        page += 1


def test_default_listing_is_outgoing_without_cancelled(api: Api):
    truth = api.server.truth()
    ids = [n["id"] for n in api.data("/nfe")]
    expected = set(truth["outgoing_ids"]) - set(truth["cancelled_ids"])
    assert set(ids) == expected
    assert ids == sorted(ids, reverse=True)  # newest first, stable
    cancelled = [n["id"] for n in api.data("/nfe", {"situacao": 2})]
    assert set(cancelled) == set(truth["cancelled_ids"]) and cancelled
    six = api.data("/nfe", {"situacao": 6})
    assert six and all(n["situacao"] == 6 for n in six)


def test_tipo_filter(api: Api):
    truth = api.server.truth()
    incoming = {n["id"] for n in api.data("/nfe", {"tipo": "0"})}
    assert incoming == {i for i in truth["incoming_ids"] if truth["nfe"][i]["situacao"] != 2}
    assert {n["id"] for n in api.data("/nfe", {"tipo": 1})}.isdisjoint(incoming)
    assert api.get("/nfe", {"tipo": "2"}).status_code == 400


def test_datetime_bounds_include_month_edges(api: Api):
    truth = api.server.truth()
    january = api.data("/nfe", {"dataEmissaoInicial": "2026-01-01 00:00:00",
                                "dataEmissaoFinal": "2026-01-31 23:59:59"})
    stamps = {n["dataEmissao"] for n in january}
    assert "2026-01-01 00:00:00" in stamps and "2026-01-31 23:59:59" in stamps
    expected = {i for i in truth["outgoing_ids"] if truth["nfe"][i]["dataEmissao"].startswith("2026-01")
                and truth["nfe"][i]["situacao"] != 2}
    assert {n["id"] for n in january} == expected
    # One second short on either side loses the edge notes.
    inner = api.data("/nfe", {"dataEmissaoInicial": "2026-01-01 00:00:01", "dataEmissaoFinal": "2026-01-31 23:59:58"})
    assert {n["dataEmissao"] for n in inner}.isdisjoint({"2026-01-01 00:00:00", "2026-01-31 23:59:59"})


def test_bare_date_final_means_midnight(api: Api):
    bare = api.data("/nfe", {"dataEmissaoInicial": "2026-01-01", "dataEmissaoFinal": "2026-01-31"})
    full = api.data("/nfe", {"dataEmissaoInicial": "2026-01-01", "dataEmissaoFinal": "2026-01-31 23:59:59"})
    assert "2026-01-31 23:59:59" not in {n["dataEmissao"] for n in bare}
    assert "2026-01-01 00:00:00" in {n["dataEmissao"] for n in bare}
    assert len(bare) < len(full)
    assert all(n["dataEmissao"] < "2026-01-31 00:00:01" for n in bare)


def test_window_over_one_year_is_400(api: Api):
    ok = api.get("/nfe", {"dataEmissaoInicial": "2025-02-01 00:00:00", "dataEmissaoFinal": "2026-02-01 00:00:00"})
    assert ok.status_code == 200
    r = api.get("/nfe", {"dataEmissaoInicial": "2025-02-01 00:00:00", "dataEmissaoFinal": "2026-02-01 00:00:01"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "VALIDATION_ERROR" and error["message"] and error["description"]
    assert api.get("/nfe", {"dataEmissaoInicial": "01/02/2026"}).status_code == 400


def test_limite_over_100_is_400(api: Api):
    assert api.get("/nfe", {"limite": 100}).status_code == 200
    r = api.get("/nfe", {"limite": 101})
    assert r.status_code == 400 and r.json()["error"]["type"] == "VALIDATION_ERROR"
    assert api.get("/nfe", {"pagina": 0}).status_code == 400


def test_pagination_until_empty_page(api: Api):
    truth = api.server.truth()
    got = list_all(api, limite=5)
    ids = [n["id"] for n in got]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(truth["outgoing_ids"]) - set(truth["cancelled_ids"])
    assert api.data("/nfe", {"pagina": 99}) == []


def test_numero_serie_chave_filters(api: Api):
    note = api.data("/nfe")[3]
    detail = api.data(f"/nfe/{note['id']}")
    assert [n["id"] for n in api.data("/nfe", {"numero": note["numero"]})] == [note["id"]]
    assert [n["id"] for n in api.data("/nfe", {"chaveAcesso": note["chaveAcesso"]})] == [note["id"]]
    assert note["id"] in {n["id"] for n in api.data("/nfe", {"serie": detail["serie"]})}


def test_list_and_detail_shapes_follow_spec(api: Api, spec):
    base = properties(spec, "NotasFiscaisDadosBaseDTO")
    get = properties(spec, "NotasFiscaisDadosGetDTO")
    item = api.data("/nfe", {"limite": 1})[0]
    assert set(item) == set(NFE_LIST_KEYS)
    assert set(item) <= set(base)
    assert isinstance(item["numero"], str) and isinstance(item["chaveAcesso"], str) and isinstance(item["tipo"], int)
    assert set(item["contato"]) <= set(base["contato"]["properties"])
    assert {"endereco", "bairro", "municipio"} <= set(item["contato"]["endereco"])
    detail = api.data(f"/nfe/{item['id']}")
    assert set(detail) <= set(base) | set(get)
    for key in ("serie", "valorNota", "valorFrete", "finalidade", "xml", "linkDanfe", "linkPDF",
                "optanteSimplesNacional", "numeroPedidoLoja", "transporte", "vendedor", "itens", "parcelas"):
        assert key in detail
    item_props = get["itens"]["items"]["properties"]
    for line in detail["itens"]:
        assert set(line) <= set(item_props) and "documentoReferenciado" not in line  # removed in v339
        assert set(line["impostos"]["icms"]) == set(item_props["impostos"]["properties"]["icms"]["properties"])
    parcela_props = get["parcelas"]["items"]["properties"]
    for parcela in detail["parcelas"]:
        assert set(parcela) == set(parcela_props)
    assert set(detail["transporte"]) == set(get["transporte"]["properties"])
    assert {k: item[k] for k in NFE_LIST_KEYS} == {k: detail[k] for k in NFE_LIST_KEYS}


def test_detail_matches_truth_exactly(api: Api):
    truth = api.server.truth()
    nid = truth["payment_mismatch_ids"][0]
    assert api.data(f"/nfe/{nid}") == truth["nfe"][nid]


def test_unknown_ids_404(api: Api):
    for path in ("/nfe/1", "/nfe/abc", "/contatos/1", "/produtos/1", "/formas-pagamentos/1"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["type"] == "RESOURCE_NOT_FOUND"


def test_admin_cancel_moves_note_out_of_default_listing(make_server):
    server = make_server(rate_per_s=1000)
    api = Api(server)
    nid = api.data("/nfe")[0]["id"]
    r = requests.post(server.url + "/__admin/cancel", json={"id": nid}, timeout=5)
    assert r.status_code == 200
    assert nid not in {n["id"] for n in api.data("/nfe")}
    assert nid in {n["id"] for n in api.data("/nfe", {"situacao": 2})}
    assert api.data(f"/nfe/{nid}")["situacao"] == 2
    assert nid in server.truth()["cancelled_ids"]
    requests.post(server.url + "/__admin/set_situacao", json={"id": nid, "situacao": 6}, timeout=5)
    assert nid in {n["id"] for n in api.data("/nfe")}
    assert requests.post(server.url + "/__admin/cancel", json={"id": 1}, timeout=5).status_code == 404
