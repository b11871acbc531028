"""The generated dataset: deterministic, and carrying every trap the pipeline must survive."""
from __future__ import annotations

import calendar
from decimal import ROUND_HALF_UP, Decimal

from local.sandbox import jsonutil
from local.sandbox.dataset import NASTY_NAME, build_profile, generate_dataset, history_months, profile_kwargs


def test_same_seed_same_bytes_other_seed_differs():
    a = jsonutil.dumps(build_profile("small", seed=11).truth())
    b = jsonutil.dumps(build_profile("small", seed=11).truth())
    c = jsonutil.dumps(build_profile("small", seed=12).truth())
    assert a == b
    assert a != c


def test_profile_sizes():
    small = build_profile("small", seed=1)
    assert len(small.outgoing_ids()) == 24
    demo = build_profile("demo", seed=1)
    assert len(demo.outgoing_ids()) == 99 and len(demo.contacts) == 60 and len(demo.products) == 50
    months = history_months()
    by_year: dict[str, int] = {}
    for key, n in months.items():
        by_year[key[:4]] = by_year.get(key[:4], 0) + n
    assert by_year == {"2021": 147, "2022": 186, "2023": 402, "2024": 820, "2025": 1200, "2026": 171}
    kw = profile_kwargs("history", scale=0.1)
    assert sum(kw["invoices_by_month"].values()) < 400 and kw["contacts"] == 140 and kw["products"] == 100


def test_ids_are_large_and_unique():
    ds = build_profile("demo", seed=3)
    for ids in (ds.nfe, ds.contacts, ds.products, ds.payment_forms):
        assert all(10 <= len(str(i)) <= 11 for i in ids)
    all_ids = [*ds.nfe, *ds.contacts, *ds.products, *ds.payment_forms]
    assert len(all_ids) == len(set(all_ids))


def test_invoice_fields_and_arithmetic():
    ds = build_profile("demo", seed=5)
    truth = ds.truth()
    for nid, note in truth["nfe"].items():
        assert isinstance(note["numero"], str) and isinstance(note["serie"], int)
        assert len(note["chaveAcesso"]) == 44 and note["chaveAcesso"].isdigit()
        assert len(note["dataEmissao"]) == 19
        assert 1 <= len(note["itens"]) <= 7  # 1-6 lines, plus one repeated-SKU line sometimes
        assert len(note["parcelas"]) <= 3
        for item in note["itens"]:
            expected = (item["quantidade"] * item["valor"]).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert item["valorTotal"] == expected
        assert note["valorNota"] == sum(i["valorTotal"] for i in note["itens"]) + note["valorFrete"]
        paid = sum((p["valor"] for p in note["parcelas"]), Decimal(0))
        if note["parcelas"]:
            assert (paid != note["valorNota"]) == (nid in truth["payment_mismatch_ids"])
        for p in note["parcelas"]:
            assert p["formaPagamento"]["id"] in truth["payment_forms"]
    assert truth["payment_mismatch_ids"]
    assert truth["cancelled_ids"] and set(truth["cancelled_ids"]) <= set(truth["outgoing_ids"])
    assert truth["incoming_ids"]
    situacoes = {truth["nfe"][i]["situacao"] for i in truth["outgoing_ids"]}
    assert {2, 5, 6} <= situacoes


def test_month_edges_present():
    ds = build_profile("small", seed=2)
    stamps = {n["dataEmissao"] for n in ds.nfe.values() if n["tipo"] == 1}
    for key in ("2026-01", "2026-02"):
        y, m = int(key[:4]), int(key[5:])
        assert f"{key}-01 00:00:00" in stamps
        assert f"{key}-{calendar.monthrange(y, m)[1]:02d} 23:59:59" in stamps
    edge = ds.truth()["edge_ids"]
    assert len(edge) == 4 and all(ds.nfe[i]["situacao"] != 2 for i in edge)


def test_traps_present():
    ds = build_profile("small", seed=4)
    truth = ds.truth()
    names = {c["nome"] for c in truth["contacts"].values()}
    assert NASTY_NAME in names and "Açaí Ltda" in names
    assert any("São João" in n for n in names)
    invoice_names = {n["contato"]["nome"] for n in truth["nfe"].values()}
    assert NASTY_NAME in invoice_names
    codes = {p["codigo"] for p in truth["products"].values()}
    used = [it["codigo"] for n in truth["nfe"].values() for it in n["itens"]]
    assert truth["unknown_skus"] and not set(truth["unknown_skus"]) & codes
    assert set(truth["unknown_skus"]) & set(used)
    assert truth["duplicate_sku_ids"]
    assert any(m["idProdutoPai"] for m in truth["product_meta"].values())
    assert any(p["situacao"] == "I" for p in truth["products"].values())
    assert any(m["deleted"] for m in truth["product_meta"].values())
    assert "PARAF 3/8" in codes


def test_json_round_trip_is_exact():
    ds = build_profile("small", seed=9)
    truth = ds.truth()
    back = jsonutil.loads(jsonutil.dumps(truth))
    note = next(iter(truth["nfe"].values()))
    again = back["nfe"][str(note["id"])]
    assert again["valorNota"] == note["valorNota"]
    assert [i["quantidade"] for i in again["itens"]] == [i["quantidade"] for i in note["itens"]]
    # Written as bare numbers, never quoted, never with an exponent.
    text = jsonutil.dumps({"v": Decimal("1234.5600"), "q": Decimal("1.50"), "z": Decimal("0E-2")}).decode()
    assert text == '{"v":1234.56,"q":1.5,"z":0}'


def test_custom_arguments():
    ds = generate_dataset(3, {"2025-12": 5}, 8, 10, cancelled_share=0, incoming_share=0, unknown_sku_share=0)
    assert len(ds.nfe) == 5 and not ds.cancelled_ids() and not ds.unknown_skus


def test_history_profile_scaled_down():
    ds = build_profile("history", seed=1, scale=0.03)
    months = {n["dataEmissao"][:7] for n in ds.nfe.values()}
    assert any(m.startswith("2021-") for m in months) and "2026-02" in months
    # Months with a single note still get the 00:00:00 first-day edge.
    per_month: dict[str, list[str]] = {}
    for n in ds.nfe.values():
        if n["tipo"] == 1:
            per_month.setdefault(n["dataEmissao"][:7], []).append(n["dataEmissao"])
    assert all(f"{m}-01 00:00:00" in stamps for m, stamps in per_month.items())
    assert len(ds.contacts) == 42 and len(ds.products) == 30


def test_history_small_profile_is_a_small_company_over_the_same_62_months():
    from local.sandbox.dataset import SMALL_HISTORY_SEED

    ds = build_profile("history-small", seed=SMALL_HISTORY_SEED)
    months = {n["dataEmissao"][:7] for n in ds.nfe.values() if n["tipo"] == 1}
    assert len(ds.outgoing_ids()) == 150 and len(months) == 62 and min(months) == "2021-01" and max(months) == "2026-02"
    assert len(ds.contacts) == 60 and len(ds.products) == 50 and ds.cancelled_ids()
    # Its own seed: not the quarter-size history's notes.
    quarter = build_profile("history", seed=42, scale=0.25)
    assert not set(ds.nfe) & set(quarter.nfe)
    assert build_profile("history-small", seed=SMALL_HISTORY_SEED).truth() == ds.truth()
