"""A deterministic, Bling-shaped dataset: NF-e, contacts, products and payment forms.

`generate_dataset(seed, ...)` builds every record exactly as the sandbox serves it (the shapes of
`bling-openapi-v3.json`), and keeps a little hidden metadata beside it (product creation date, deleted flag).
Everything comes from one `random.Random(seed)`, and nothing depends on hash order or the clock, so the same
arguments give the same dataset byte for byte. `Dataset.truth()` is the ground truth the pipeline tests compare
the database against.

The data carries the traps a real account has (see API-NOTES §4): cancelled notes (hidden from the default
listing), incoming notes (tipo 0) mixed with outgoing ones, notes at 00:00:00 on the first day and 23:59:59 on the
last day of every month, the same SKU on two lines of one note, SKUs that no product has, inactive/deleted
products and variations, contacts with non-ASCII names and one SQL-injection-shaped name, parcelas whose sum
deliberately misses valorNota, amounts with 2-4 decimals.

Timestamps are naive São Paulo local time strings (`YYYY-MM-DD HH:MM:SS`), as Bling sends them.
"""
from __future__ import annotations

import calendar
import copy
import dataclasses
import datetime
import decimal
import random
from typing import Any

from local.sandbox.jsonutil import dec

D = decimal.Decimal
CENT = D("0.01")

NASTY_NAME = "O'Brien'); DROP TABLE nfe;--"
SPECIAL_CONTACT_NAMES = ("São João Materiais de Construção Ltda", "Açaí Ltda", NASTY_NAME)

# The keys a list item of GET /nfe carries (NotasFiscaisDadosBaseDTO); the detail adds NotasFiscaisDadosGetDTO.
NFE_LIST_KEYS = ("id", "tipo", "situacao", "numero", "dataEmissao", "dataOperacao", "chaveAcesso", "contato",
                 "naturezaOperacao", "loja")
# The keys a list item of GET /produtos carries (ProdutosDadosBaseDTO).
PRODUCT_LIST_KEYS = ("id", "idProdutoPai", "nome", "codigo", "preco", "precoCusto", "estoque", "tipo", "situacao",
                     "formato", "descricaoCurta", "imagemURL")

# ------------------------------------------------------------------------------------------------ profiles

# Outgoing NF-e per year of the account the history profile imitates (API-NOTES §3, SOL README volumes).
HISTORY_YEARS = {2021: 147, 2022: 186, 2023: 402, 2024: 820, 2025: 1200}
HISTORY_2026 = {"2026-01": 80, "2026-02": 91}  # 171 in Jan-Feb 2026
# A small company's history beside it (issue 13): 150 outgoing NF-e over the same 62 months, ≈ 2.4 a month.
SMALL_HISTORY_YEARS = {2021: 20, 2022: 24, 2023: 29, 2024: 33, 2025: 36}
SMALL_HISTORY_2026 = {"2026-01": 4, "2026-02": 4}
# Its own default seed, so it is not a sample of the quarter-size history's random stream.
SMALL_HISTORY_SEED = 146
# Month weights (retail seasonality: slow start of year, strong November/December).
_MONTH_WEIGHTS = (7, 7, 8, 8, 8, 8, 8, 8, 8, 9, 10, 11)


def _split(total: int, weights: tuple[int, ...]) -> list[int]:
    """Split total in proportion to weights, largest remainder first, so the parts add up exactly."""
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    parts = [int(r) for r in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def history_months(scale: float = 1.0, years: dict[int, int] | None = None,
                   tail: dict[str, int] | None = None) -> dict[str, int]:
    months: dict[str, int] = {}
    for year, total in (years or HISTORY_YEARS).items():
        for m, n in enumerate(_split(round(total * scale), _MONTH_WEIGHTS), start=1):
            if n:
                months[f"{year}-{m:02d}"] = n
    for key, n in (HISTORY_2026 if tail is None else tail).items():
        if round(n * scale):
            months[key] = round(n * scale)
    return months


def profile_kwargs(name: str, scale: float = 1.0) -> dict[str, Any]:
    """Arguments of generate_dataset (except seed) for a named profile: demo, small, history, history-small."""
    if name == "small":
        return {"invoices_by_month": {"2026-01": 12, "2026-02": 12}, "contacts": 15, "products": 24}
    if name == "demo":
        return {"invoices_by_month": {"2026-01": 52, "2026-02": 47}, "contacts": 60, "products": 50}
    if name == "history":
        return {"invoices_by_month": history_months(scale), "contacts": max(20, round(1400 * scale)),
                "products": max(24, round(1000 * scale))}
    if name == "history-small":
        return {"invoices_by_month": history_months(scale, SMALL_HISTORY_YEARS, SMALL_HISTORY_2026),
                "contacts": max(20, round(60 * scale)), "products": max(24, round(50 * scale))}
    raise ValueError(f"unknown profile {name!r} ({', '.join(PROFILES)})")


PROFILES = ("demo", "small", "history", "history-small")


def build_profile(name: str, seed: int = 42, scale: float = 1.0, **overrides: Any) -> Dataset:
    return generate_dataset(seed, **{**profile_kwargs(name, scale), **overrides})


# Account k of a multi-account sandbox gets ids k × this higher: above every profile's id span (history at scale
# 10 spans ~20 million NF-e ids), so two accounts never share an id, as on Bling, where ids are global.
ACCOUNT_ID_STRIDE = 200_000_000


def build_account_dataset(name: str, seed: int, index: int, scale: float = 1.0) -> Dataset:
    """The profile for the index-th account of a sandbox (0 = the first: exactly build_profile's data)."""
    return build_profile(name, seed, scale, id_offset=index * ACCOUNT_ID_STRIDE)


# ------------------------------------------------------------------------------------------------ pools

_FIRST = ("João", "Maria", "José", "Ana", "Antônio", "Francisca", "Carlos", "Paulo", "Lúcia", "Márcia", "Luís",
          "Conceição", "Sebastião", "Fátima", "Raimundo", "Inês", "Cecília", "Vitória", "Rogério", "Débora",
          "André", "Bárbara", "Caio", "Helena", "Otávio", "Letícia", "Marcos", "Patrícia", "Renato", "Simone")
_LAST = ("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Conceição", "Gonçalves", "Araújo", "Simões",
         "Magalhães", "Brandão", "Côrtes", "Assunção", "Falcão", "Ribeiro", "Almeida", "Carvalho", "Ferreira",
         "Rocha", "Barbosa", "Nogueira", "Teixeira", "Mendes")
_COMPANY_WORDS = ("Comércio", "Distribuidora", "Mercearia", "Atacadão", "Indústria", "Papelaria", "Ferragens",
                  "Empório", "Farmácia", "Padaria", "Construtora", "Confecções", "Auto Peças", "Supermercado")
_COMPANY_TAILS = ("Ltda", "ME", "EIRELI", "S.A.", "Ltda - EPP", "& Filhos Ltda")
_CITIES = (("São Paulo", "SP"), ("Bento Gonçalves", "RS"), ("Florianópolis", "SC"), ("Goiânia", "GO"),
           ("Belém", "PA"), ("Maceió", "AL"), ("São José dos Campos", "SP"), ("Niterói", "RJ"),
           ("Ribeirão Preto", "SP"), ("Uberlândia", "MG"), ("Curitiba", "PR"), ("Vitória", "ES"),
           ("Jundiaí", "SP"), ("Caxias do Sul", "RS"), ("Campinas", "SP"), ("Santos", "SP"))
_STREETS = ("Rua Olavo Bilac", "Av. Paulista", "Rua São Bento", "Travessa da Conceição", "Rua Dr. Álvaro Alvim",
            "Av. Getúlio Vargas", "Rua XV de Novembro", "Rua das Acácias", "Av. Brasil", "Rua Marechal Deodoro")
_BAIRROS = ("Centro", "Imigrante", "Jardim América", "Vila Mariana", "Boa Vista", "São Cristóvão", "Itaim Bibi")
_PRODUCT_BASES = (
    ("Parafuso sextavado", "UN", "7318.15.00"), ("Camiseta básica algodão", "UN", "6109.10.00"),
    ("Café torrado e moído 500g", "UN", "0901.21.00"), ("Açúcar cristal", "KG", "1701.99.00"),
    ("Óleo de coco extra virgem", "UN", "1513.11.00"), ("Cabo flexível 2,5mm", "M", "8544.49.00"),
    ("Caderno universitário", "UN", "4820.20.00"), ("Sabonete líquido", "UN", "3401.30.00"),
    ("Fita adesiva transparente", "PC", "3919.10.00"), ("Pão de queijo congelado", "KG", "1905.90.90"),
    ("Tênis de corrida", "PAR", "6404.11.00"), ("Luminária de mesa", "UN", "9405.21.00"),
    ("Mangueira de jardim", "M", "3917.32.90"), ("Chocolate meio amargo", "UN", "1806.32.10"),
    ("Tinta acrílica fosca", "UN", "3209.10.00"), ("Copo térmico inox", "UN", "9617.00.10"),
)
_VARIATIONS = (("Cor:Azul;Tamanho:M", "AZ-M"), ("Cor:Azul;Tamanho:G", "AZ-G"), ("Cor:Preto;Tamanho:M", "PT-M"),
               ("Cor:Preto;Tamanho:G", "PT-G"), ("Cor:Verde;Tamanho:P", "VD-P"))
# (descricao, tipoPagamento per API-NOTES §2.8, condicao, taxa aliquota)
_PAYMENT_FORMS = (("PIX", 17, "à vista", D("0.99")), ("Boleto bancário", 15, "30", D("0")),
                  ("Cartão de Crédito", 3, "1x", D("3.49")), ("Dinheiro", 1, "à vista", D("0")),
                  ("Cartão de Débito", 4, "à vista", D("1.59")), ("Depósito em conta", 16, "à vista", D("0")))
_SITUACOES_OTHER = (1, 4)  # Pendente, Rejeitada: rare, but present, on outgoing notes


# ------------------------------------------------------------------------------------------------ helpers

def _cpf(rng: random.Random) -> str:
    digits = [rng.randint(0, 9) for _ in range(9)]
    for n in (10, 11):
        s = sum(d * w for d, w in zip(digits, range(n, 1, -1)))
        digits.append((s * 10 % 11) % 10)
    return "".join(map(str, digits))


def _cnpj(rng: random.Random) -> str:
    digits = [rng.randint(0, 9) for _ in range(8)] + [0, 0, 0, 1]
    for weights in ((5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2), (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)):
        s = sum(d * w for d, w in zip(digits, weights))
        r = s % 11
        digits.append(0 if r < 2 else 11 - r)
    return "".join(map(str, digits))


def _ean13(rng: random.Random) -> str:
    digits = [7, 8, 9] + [rng.randint(0, 9) for _ in range(9)]
    s = sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits))
    digits.append((10 - s % 10) % 10)
    return "".join(map(str, digits))


def _chave_acesso(cuf: str, when: datetime.datetime, cnpj: str, serie: int, numero: int, rng: random.Random) -> str:
    """A 44-digit NF-e access key laid out as the real one (UF, AAMM, CNPJ, model 55, serie, number, code, DV)."""
    body = f"{cuf}{when:%y%m}{cnpj}55{serie:03d}{numero:09d}1{rng.randint(0, 99999999):08d}"
    weights = [2, 3, 4, 5, 6, 7, 8, 9]
    s = sum(int(c) * weights[i % 8] for i, c in enumerate(reversed(body)))
    r = s % 11
    return body + str(0 if r < 2 else 11 - r)


def _fmt(dt: datetime.datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _money(rng: random.Random, lo: float, hi: float) -> D:
    return dec(D(rng.randint(round(lo * 100), round(hi * 100))) / 100)


class _Ids:
    """Increasing 10-11 digit ids with gaps, as Bling's shared id sequences look from one account."""

    def __init__(self, rng: random.Random, start: int) -> None:
        self._rng = rng
        self._next = start + rng.randint(0, 999_999)

    def __call__(self) -> int:
        self._next += self._rng.randint(3, 900)
        return self._next


# ------------------------------------------------------------------------------------------------ dataset

@dataclasses.dataclass
class Dataset:
    """Records as the API serves them (detail shapes), keyed by id, plus hidden metadata.

    The server mutates `nfe[...]["situacao"]` through the admin endpoints; `truth()` always reflects that.
    """

    seed: int
    today: str
    nfe: dict[int, dict[str, Any]]
    contacts: dict[int, dict[str, Any]]
    products: dict[int, dict[str, Any]]
    payment_forms: dict[int, dict[str, Any]]
    unknown_skus: list[str]
    payment_mismatch_ids: list[int]
    # product id -> {"created_at": "YYYY-MM-DD HH:MM:SS", "deleted": bool, "idProdutoPai": int | None}
    product_meta: dict[int, dict[str, Any]]

    # ---- list shapes

    def nfe_list_item(self, nfe_id: int) -> dict[str, Any]:
        note = self.nfe[nfe_id]
        return {k: copy.deepcopy(note[k]) for k in NFE_LIST_KEYS if k in note}

    def product_list_item(self, product_id: int) -> dict[str, Any]:
        product = self.products[product_id]
        item = {k: copy.deepcopy(product[k]) for k in PRODUCT_LIST_KEYS if k in product}
        parent = self.product_meta[product_id].get("idProdutoPai")
        if parent:
            item["idProdutoPai"] = parent
        item["precoCusto"] = product["fornecedor"]["precoCusto"]
        item["estoque"] = {"saldoVirtualTotal": product["estoque"]["saldoVirtualTotal"]}
        return {k: item[k] for k in PRODUCT_LIST_KEYS if k in item}

    # ---- id sets

    def outgoing_ids(self) -> list[int]:
        return sorted(i for i, n in self.nfe.items() if n["tipo"] == 1)

    def incoming_ids(self) -> list[int]:
        return sorted(i for i, n in self.nfe.items() if n["tipo"] == 0)

    def cancelled_ids(self) -> list[int]:
        return sorted(i for i, n in self.nfe.items() if n["situacao"] == 2)

    def truth(self) -> dict[str, Any]:
        """Plain dict (ints as keys, Decimals as amounts) of everything the API can serve, plus the answer keys."""
        edge_ids = sorted(
            i for i, n in self.nfe.items()
            if (n["dataEmissao"].endswith(" 00:00:00") and n["dataEmissao"][8:10] == "01")
            or (n["dataEmissao"].endswith(" 23:59:59") and _is_last_day(n["dataEmissao"])))
        dup_ids = sorted(i for i, n in self.nfe.items()
                         if len({it["codigo"] for it in n["itens"]}) < len(n["itens"]))
        return copy.deepcopy({
            "seed": self.seed,
            "today": self.today,
            "nfe": self.nfe,
            "contacts": self.contacts,
            "products": self.products,
            "payment_forms": self.payment_forms,
            "product_meta": self.product_meta,
            "unknown_skus": sorted(self.unknown_skus),
            "outgoing_ids": self.outgoing_ids(),
            "incoming_ids": self.incoming_ids(),
            "cancelled_ids": self.cancelled_ids(),
            "payment_mismatch_ids": sorted(self.payment_mismatch_ids),
            "edge_ids": edge_ids,
            "duplicate_sku_ids": dup_ids,
        })


def _is_last_day(stamp: str) -> bool:
    y, m, d = int(stamp[:4]), int(stamp[5:7]), int(stamp[8:10])
    return d == calendar.monthrange(y, m)[1]


def generate_dataset(seed: int, invoices_by_month: dict[str, int], contacts: int, products: int, *,
                     cancelled_share: float = 0.04, incoming_share: float = 0.1, unknown_sku_share: float = 0.02,
                     payment_mismatch_share: float = 0.015, duplicate_line_share: float = 0.06,
                     recent_product_share: float = 0.1, recent_days: int = 30,
                     today: str = "2026-03-01", id_offset: int = 0) -> Dataset:
    """Build a dataset.

    invoices_by_month: "YYYY-MM" -> number of OUTGOING (tipo 1) notes, cancelled ones included. Incoming notes
        (tipo 0) come on top: round(n * incoming_share) per month. Each month's first outgoing note is emitted at
        day 1 00:00:00 and (when n >= 2) its last at the last day 23:59:59; those edge notes are never cancelled.
    contacts / products: how many records (products include variation parents and their variations).
    cancelled_share, unknown_sku_share, payment_mismatch_share, duplicate_line_share: how often each trap occurs;
        each occurs at least once when its share is > 0 and there is room for it.
    recent_product_share / recent_days: products created within `recent_days` before `today` (the only ones
        GET /produtos returns with the default criterio=1).
    id_offset: added to every id (NF-e, contacts, products, payment forms, ...) and nothing else: Bling's ids are
        global, so two accounts never share one; build_account_dataset gives account k its own range.
    """
    rng = random.Random(seed)
    today_dt = datetime.datetime.strptime(today, "%Y-%m-%d")
    payment_forms = _gen_payment_forms(rng, id_offset)
    contact_map = _gen_contacts(rng, max(contacts, len(SPECIAL_CONTACT_NAMES) + 2), id_offset)
    product_map, meta = _gen_products(rng, max(products, 8), today_dt, recent_product_share, recent_days, id_offset)
    n_unknown = max(1, round(len(product_map) * unknown_sku_share * 2)) if unknown_sku_share > 0 else 0
    unknown_skus = [f"LEGADO-{rng.randint(10000, 99999)}-{i}" for i in range(n_unknown)]
    ds = Dataset(seed=seed, today=today, nfe={}, contacts=contact_map, products=product_map,
                 payment_forms=payment_forms, unknown_skus=unknown_skus, payment_mismatch_ids=[],
                 product_meta=meta)
    _gen_invoices(rng, ds, invoices_by_month, cancelled_share=cancelled_share, incoming_share=incoming_share,
                  unknown_sku_share=unknown_sku_share, mismatch_share=payment_mismatch_share,
                  duplicate_share=duplicate_line_share, id_offset=id_offset)
    return ds


def _gen_payment_forms(rng: random.Random, id_offset: int) -> dict[int, dict[str, Any]]:
    ids = _Ids(rng, 7_400_000_000 + id_offset)
    forms: dict[int, dict[str, Any]] = {}
    for i, (descricao, tipo, condicao, aliquota) in enumerate(_PAYMENT_FORMS):
        fid = ids()
        card = tipo in (3, 4)
        forms[fid] = {
            "id": fid, "descricao": descricao, "tipoPagamento": tipo, "situacao": 1, "fixa": tipo == 1,
            "padrao": 1 if i == 0 else 0, "finalidade": 1, "juros": dec("0"),
            "multa": dec("2") if tipo == 15 else dec("0"),
            "condicao": condicao, "destino": 1, "utilizaDiasUteis": tipo == 15,
            "taxas": {"aliquota": dec(aliquota), "valor": dec("0"), "prazo": 30 if card else 0},
            "dadosCartao": {"bandeira": 1 if card else 99, "tipo": 1 if tipo == 3 else 2,
                            "cnpjCredenciadora": "01027058000191" if card else "", "autoLiquidacao": 0},
        }
    return forms


def _address(rng: random.Random, formatted_cep: bool) -> dict[str, str]:
    city, uf = rng.choice(_CITIES)
    cep = f"{rng.randint(1000, 99999):05d}{rng.randint(0, 999):03d}"
    return {"endereco": rng.choice(_STREETS), "cep": f"{cep[:5]}-{cep[5:]}" if formatted_cep else cep,
            "bairro": rng.choice(_BAIRROS), "municipio": city, "uf": uf, "numero": str(rng.randint(1, 3999)),
            "complemento": rng.choice(("", "", "Sala 101", "Apto 42", "Fundos", "Galpão 3"))}


def _gen_contacts(rng: random.Random, n: int, id_offset: int) -> dict[int, dict[str, Any]]:
    ids = _Ids(rng, 16_500_000_000 + id_offset)
    out: dict[int, dict[str, Any]] = {}
    for i in range(n):
        cid = ids()
        special = SPECIAL_CONTACT_NAMES[i - 1] if 1 <= i <= len(SPECIAL_CONTACT_NAMES) else None
        company = (special is not None and special != NASTY_NAME) or (special is None and rng.random() < 0.45)
        if special:
            nome = special
        elif company:
            nome = f"{rng.choice(_COMPANY_WORDS)} {rng.choice(_LAST)} {rng.choice(_COMPANY_TAILS)}"
        else:
            nome = f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {rng.choice(_LAST)}"
        doc = _cnpj(rng) if company else _cpf(rng)
        geral = _address(rng, formatted_cep=True)
        supplier = company and rng.random() < 0.2
        ddd = rng.randint(11, 99)
        out[cid] = {
            "id": cid, "nome": nome, "codigo": f"C{i + 1:05d}", "situacao": "A" if rng.random() < 0.95 else "I",
            "numeroDocumento": doc, "telefone": f"({ddd}) {rng.randint(2000, 5999)}-{rng.randint(0, 9999):04d}",
            "celular": f"({ddd}) 9{rng.randint(6000, 9999)}-{rng.randint(0, 9999):04d}",
            "fantasia": nome.split(" ")[0] if company else "", "tipo": "J" if company else "F",
            "indicadorIe": 1 if company else 9, "ie": str(rng.randint(10**8, 10**9)) if company else "",
            "rg": "" if company else str(rng.randint(10**7, 10**8)), "inscricaoMunicipal": "",
            "orgaoEmissor": "" if company else "SSP", "email": f"contato{i + 1}@exemplo.com.br",
            "emailNotaFiscal": f"nfe{i + 1}@exemplo.com.br" if company else "", "orgaoPublico": "N",
            "endereco": {"geral": geral, "cobranca": geral if rng.random() < 0.8 else _address(rng, True)},
            "vendedor": {"id": 0}, "dadosAdicionais": {
                "dataNascimento": "" if company
                else f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "sexo": "" if company else rng.choice(("M", "F")), "naturalidade": "" if company else "Brasileira"},
            "financeiro": {"limiteCredito": dec(rng.choice(("0", "0", "1500", "5000.5"))),
                           "condicaoPagamento": rng.choice(("", "30", "30 60")), "categoria": {"id": 0}},
            "pais": {"nome": "BRASIL"},
            "tiposContato": [{"id": 1_100_000_002, "descricao": "Fornecedor"}] if supplier
            else [{"id": 1_100_000_001, "descricao": "Cliente"}],
            "pessoasContato": [],
        }
        out[cid]["endereco"]["cobranca"] = dict(out[cid]["endereco"]["cobranca"])
    return out


def _product_record(rng: random.Random, pid: int, nome: str, codigo: str, unidade: str, ncm: str, preco: D,
                    situacao: str, formato: str) -> dict[str, Any]:
    custo = dec((preco * D(rng.randint(40, 70)) / 100).quantize(CENT))
    peso = dec(D(rng.randint(50, 5000)) / 1000)
    return {
        "id": pid, "nome": nome, "codigo": codigo, "preco": preco, "tipo": "P", "situacao": situacao,
        "formato": formato, "descricaoCurta": f"<p>{nome}</p>",
        "imagemURL": f"https://www.bling.com.br/imagens/imagens-produtos/{pid}", "dataValidade": "",
        "unidade": unidade, "pesoLiquido": peso, "pesoBruto": dec(peso + D("0.05")), "volumes": 1,
        "itensPorCaixa": dec("1"), "gtin": _ean13(rng) if rng.random() < 0.8 else "", "gtinEmbalagem": "",
        "tipoProducao": "T", "condicao": 0, "freteGratis": False, "marca": rng.choice(("", "Acme", "Genérica")),
        "descricaoComplementar": "", "linkExterno": "", "observacoes": "", "descricaoEmbalagemDiscreta": "",
        "categoria": {"id": 0},
        "estoque": {"minimo": dec("0"), "maximo": dec("0"), "crossdocking": 0, "localizacao": "",
                    "saldoVirtualTotal": dec(D(rng.randint(-2, 300)))},
        "fornecedor": {"id": 0, "contato": {"id": 0, "nome": ""}, "codigo": "", "precoCusto": custo,
                       "precoCompra": custo},
        "actionEstoque": "",
        "dimensoes": {"largura": dec("0"), "altura": dec("0"), "profundidade": dec("0"), "unidadeMedida": 1},
        "tributacao": {"origem": 0, "nFCI": "", "ncm": ncm, "cest": "", "codigoListaServicos": "",
                       "spedTipoItem": "", "codigoItem": "", "percentualTributos": dec("0"),
                       "valorBaseStRetencao": dec("0"), "valorStRetencao": dec("0"),
                       "valorICMSSubstituto": dec("0"), "codigoExcecaoTipi": "", "classeEnquadramentoIpi": "",
                       "valorIpiFixo": dec("0"), "codigoSeloIpi": "", "valorPisFixo": dec("0"),
                       "valorCofinsFixo": dec("0"), "codigoANP": "", "descricaoANP": "", "percentualGLP": dec("0"),
                       "percentualGasNacional": dec("0"), "percentualGasImportado": dec("0"),
                       "valorPartida": dec("0"), "tipoArmamento": 0, "descricaoCompletaArmamento": "",
                       "dadosAdicionais": "", "grupoProduto": {"id": 0}},
        "midia": {"video": {"url": ""}, "imagens": {"imagensURL": [], "externas": [], "internas": []}},
        "linhaProduto": {"id": 0},
        "estrutura": {"tipoEstoque": "F", "lancamentoEstoque": "A", "componentes": []},
        "camposCustomizados": [], "artigoPerigoso": False, "variacoes": [],
    }


def _gen_products(rng: random.Random, n: int, today: datetime.datetime, recent_share: float,
                  recent_days: int, id_offset: int) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    ids = _Ids(rng, 15_900_000_000 + id_offset)
    products: dict[int, dict[str, Any]] = {}
    meta: dict[int, dict[str, Any]] = {}
    start = datetime.datetime(2019, 1, 1)
    span = int((today - start).total_seconds())
    recent_from = today - datetime.timedelta(days=recent_days)
    seq = 0
    odd_code_done = False
    # (situacao, deleted, recent, with variations); situacao None = random
    forced_kinds: list[tuple[str | None, bool, bool, bool]] = [
        (None, False, False, False), ("I", False, False, False), ("I", True, False, False),
        ("A", False, True, False), ("A", False, True, False), ("A", False, False, True)]

    def created_at(force_recent: bool) -> str:
        if force_recent or rng.random() < recent_share:
            return _fmt(recent_from + datetime.timedelta(seconds=rng.randint(3600, recent_days * 86400 - 3600)))
        return _fmt(start + datetime.timedelta(seconds=rng.randint(0, span - (recent_days + 1) * 86400)))

    def status() -> tuple[str, bool]:
        r = rng.random()
        return ("I", False) if r < 0.07 else ("I", True) if r < 0.10 else ("A", False)

    while len(products) < n:
        seq += 1
        base, unidade, ncm = rng.choice(_PRODUCT_BASES)
        preco = _money(rng, 2.5, 1800)
        idx = len(products)
        # The first top-level products are forced, so every kind exists even in the smallest dataset:
        # an inactive one, a deleted one, two active recent ones (criterio=1), then a product with variations.
        forced = forced_kinds.pop(0) if forced_kinds else None
        situacao, deleted = forced[:2] if forced and forced[0] else status()
        recent = bool(forced and forced[2])
        if ((forced and forced[3]) or rng.random() < 0.12) and n - len(products) >= 3:
            pid = ids()
            code = f"VAR-{seq:04d}"
            products[pid] = _product_record(rng, pid, f"{base} {seq}", code, unidade, ncm, preco, situacao, "V")
            meta[pid] = {"created_at": created_at(recent), "deleted": deleted, "idProdutoPai": None}
            k = min(rng.randint(2, 4), n - len(products))
            for vname, vcode in rng.sample(_VARIATIONS, k):
                vid = ids()
                child = _product_record(rng, vid, f"{base} {seq} {vname}", f"{code}-{vcode}", unidade, ncm, preco,
                                        situacao if situacao == "I" else status()[0], "S")
                products[vid] = child
                meta[vid] = {"created_at": meta[pid]["created_at"], "deleted": deleted, "idProdutoPai": pid}
                variation = {k2: copy.deepcopy(v) for k2, v in child.items() if k2 != "variacoes"}
                variation["variacao"] = {"nome": vname, "ordem": len(products[pid]["variacoes"]) + 1,
                                         "produtoPai": {"id": pid, "cloneInfo": True}}
                products[pid]["variacoes"].append(variation)
            continue
        pid = ids()
        # One code with a space and a slash: it must be URL-encoded to be found.
        code = f"SKU-{seq:05d}"
        if idx >= 6 and not odd_code_done:
            code, odd_code_done = "PARAF 3/8", True
        products[pid] = _product_record(rng, pid, f"{base} {seq}", code, unidade, ncm, preco, situacao, "S")
        meta[pid] = {"created_at": created_at(recent), "deleted": deleted, "idProdutoPai": None}
    return products, meta


def _month_bounds(key: str) -> tuple[datetime.datetime, datetime.datetime]:
    y, m = int(key[:4]), int(key[5:7])
    first = datetime.datetime(y, m, 1)
    last = datetime.datetime(y, m, calendar.monthrange(y, m)[1], 23, 59, 59)
    return first, last


def _gen_invoices(rng: random.Random, ds: Dataset, invoices_by_month: dict[str, int], *, cancelled_share: float,
                  incoming_share: float, unknown_sku_share: float, mismatch_share: float,
                  duplicate_share: float, id_offset: int) -> None:
    company_cnpj = _cnpj(rng)
    natureza_ids = [_Ids(rng, 9_100_000_000 + id_offset)() for _ in range(2)]
    loja_ids = [0, _Ids(rng, 2_030_000_000 + id_offset)()]
    vendedor_ids = [0, _Ids(rng, 15_500_000_000 + id_offset)()]
    contact_ids = list(ds.contacts)
    special_ids = [cid for cid in contact_ids if ds.contacts[cid]["nome"] in SPECIAL_CONTACT_NAMES]
    suppliers = [cid for cid in contact_ids if ds.contacts[cid]["tiposContato"][0]["descricao"] == "Fornecedor"]
    suppliers = suppliers or contact_ids[:3]
    # Invoice items reference sellable codes: simple products and variations, never a variation parent.
    sellable = [p["codigo"] for p in ds.products.values() if p["formato"] == "S"]
    by_code = {p["codigo"]: p for p in ds.products.values()}
    form_ids = list(ds.payment_forms)

    # 1. Every note's emission time and kind, then ids in chronological order (Bling ids grow with time).
    plan: list[tuple[datetime.datetime, int, str]] = []  # (when, tipo, tag)
    for key in sorted(invoices_by_month):
        n = invoices_by_month[key]
        if n <= 0:
            continue
        first, last = _month_bounds(key)
        span = int((last - first).total_seconds())
        times = sorted(first + datetime.timedelta(seconds=rng.randint(1, span - 1)) for _ in range(n))
        times[0] = first
        tags = ["edge"] + ["normal"] * (n - 1)
        if n >= 2:
            times[-1] = last
            tags[-1] = "edge"
        plan += [(t, 1, tag) for t, tag in zip(times, tags)]
        for _ in range(round(n * incoming_share)):
            plan.append((first + datetime.timedelta(seconds=rng.randint(1, span - 1)), 0, "normal"))
    plan.sort(key=lambda p: (p[0], p[1]))

    ids = _Ids(rng, 22_400_000_000 + id_offset)
    numero = rng.randint(100, 5000)
    special_queue = list(special_ids)
    unknown_used = duplicate_used = False
    for when, tipo, tag in plan:
        nid = ids()
        if tipo == 1:
            numero += 1
            serie, num = 1, numero
            cid = special_queue.pop(0) if special_queue else rng.choice(contact_ids)
            cuf_cnpj = ("35", company_cnpj)
            situacao = 6 if rng.random() < 0.7 else 5
            if tag == "normal" and rng.random() < 0.03:
                situacao = rng.choice(_SITUACOES_OTHER)
        else:
            serie, num = rng.randint(1, 3), rng.randint(1, 999_999)
            cid = rng.choice(suppliers)
            cuf_cnpj = ("41", ds.contacts[cid]["numeroDocumento"].rjust(14, "0")[:14])
            situacao = rng.choice((7, 7, 5, 6))
        contact = ds.contacts[cid]
        geral = contact["endereco"]["geral"]
        operacao = when if rng.random() < 0.8 else min(when + datetime.timedelta(minutes=rng.randint(1, 90)),
                                                          when.replace(hour=23, minute=59, second=59))
        chave = _chave_acesso(cuf_cnpj[0], when, cuf_cnpj[1], serie, num, rng)
        same_state = geral["uf"] == "SP"

        # Items.
        itens = []
        for _ in range(rng.randint(1, 6)):
            force_unknown = not unknown_used and unknown_sku_share > 0 and tipo == 1 and tag == "normal"
            if ds.unknown_skus and (force_unknown or rng.random() < unknown_sku_share):
                unknown_used = True
                code = rng.choice(ds.unknown_skus)
                product = None
            else:
                code = rng.choice(sellable)
                product = by_code[code]
            itens.append(_item(rng, code, product, same_state))
        force_dup = not duplicate_used and duplicate_share > 0 and tipo == 1 and tag == "normal"
        if force_dup or rng.random() < duplicate_share:
            duplicate_used = True
            twin = dict(itens[0])
            twin.update(_item(rng, itens[0]["codigo"], by_code.get(itens[0]["codigo"]), same_state,
                              descricao=itens[0]["descricao"]))
            itens.insert(rng.randint(1, len(itens)), twin)
        total_itens = sum((it["valorTotal"] for it in itens), D(0))
        frete = dec("0") if rng.random() < 0.7 else _money(rng, 9.9, 89.9)
        valor_nota = dec(total_itens + frete)

        # Parcelas: split valorNota; the last one takes the rounding remainder.
        n_parc = rng.choice((0, 1, 1, 1, 2, 2, 3)) if tipo == 1 else rng.choice((0, 1))
        parcelas = []
        remaining = valor_nota
        for k in range(n_parc):
            valor = remaining if k == n_parc - 1 else dec((valor_nota / n_parc).quantize(CENT, decimal.ROUND_DOWN))
            remaining = dec(remaining - valor)
            fid = rng.choice(form_ids)
            card = ds.payment_forms[fid]["tipoPagamento"] in (3, 4)
            parcelas.append({"data": (when + datetime.timedelta(days=30 * k)).strftime("%Y-%m-%d"), "valor": valor,
                             "observacoes": "", "caut": f"{rng.randint(0, 999999):06d}" if card else "",
                             "formaPagamento": {"id": fid}})
        ds.nfe[nid] = {
            "id": nid, "tipo": tipo, "situacao": situacao, "numero": str(num), "dataEmissao": _fmt(when),
            "dataOperacao": _fmt(operacao), "chaveAcesso": chave,
            "contato": {"id": cid, "nome": contact["nome"], "numeroDocumento": contact["numeroDocumento"],
                        "ie": contact["ie"], "rg": contact["rg"], "telefone": contact["telefone"],
                        "email": contact["email"],
                        "endereco": {"endereco": geral["endereco"], "numero": geral["numero"],
                                     "complemento": geral["complemento"], "bairro": geral["bairro"],
                                     "cep": geral["cep"].replace("-", ""), "municipio": geral["municipio"],
                                     "uf": geral["uf"], "pais": ""}},
            "naturezaOperacao": {"id": natureza_ids[0] if tipo == 1 else natureza_ids[1]},
            "loja": {"id": rng.choice(loja_ids)},
            "serie": serie, "valorNota": valor_nota, "valorFrete": frete, "finalidade": 1,
            "xml": f"https://www.bling.com.br/relatorios/nfe.xml.php?chaveAcesso={chave}",
            "linkDanfe": f"https://www.bling.com.br/doc.view.php?id={nid:x}&accessKey={chave}",
            "linkPDF": f"https://www.bling.com.br/doc.view.php?PDF=true&id={nid:x}&accessKey={chave}",
            "optanteSimplesNacional": tipo == 1,
            "numeroPedidoLoja": "" if rng.random() < 0.6 else f"PED-{rng.randint(10000, 99999)}",
            "transporte": {
                "fretePorConta": 0 if frete else 9,
                "transportador": {"nome": "Transportadora Rápida Ltda" if frete else "",
                                  "numeroDocumento": "30188025000121" if frete else ""},
                "volumes": [{"id": ids()}] if frete else [],
                "etiqueta": {"nome": contact["nome"], "endereco": geral["endereco"], "numero": geral["numero"],
                             "complemento": geral["complemento"], "municipio": geral["municipio"],
                             "uf": geral["uf"], "cep": geral["cep"].replace("-", ""), "bairro": geral["bairro"]},
            },
            "vendedor": {"id": rng.choice(vendedor_ids)},
            "itens": itens,
            "parcelas": parcelas,
        }

    _apply_situacoes(rng, ds, cancelled_share)
    _apply_mismatches(rng, ds, mismatch_share)


def _item(rng: random.Random, code: str, product: dict[str, Any] | None, same_state: bool, *,
          descricao: str | None = None) -> dict[str, Any]:
    unidade = product["unidade"] if product else rng.choice(("UN", "KG"))
    if unidade in ("KG", "M"):
        quantidade = dec(D(rng.randint(1, 12000)) / D(1000 if rng.random() < 0.5 else 10))
    else:
        quantidade = dec(rng.randint(1, 12))
    base = product["preco"] if product else _money(rng, 5, 400)
    if rng.random() < 0.05:
        valor = dec((base * D("0.9137")).quantize(D("0.0001")))  # a discounted unit price with 4 decimals
    elif rng.random() < 0.2:
        valor = dec((base * D(rng.randint(85, 99)) / 100).quantize(CENT))
    else:
        valor = base
    valor_total = dec((quantidade * valor).quantize(CENT, decimal.ROUND_HALF_UP))
    aliquota = D(18) if same_state else D(12)
    nome = descricao or (product["nome"] if product else f"Item antigo {code}")
    return {
        "codigo": code, "descricao": nome, "unidade": unidade, "quantidade": quantidade, "valor": valor,
        "valorTotal": valor_total, "tipo": "P",
        "pesoBruto": product["pesoBruto"] if product else dec("0"),
        "pesoLiquido": product["pesoLiquido"] if product else dec("0"),
        "numeroPedidoCompra": "", "classificacaoFiscal": product["tributacao"]["ncm"] if product else "9999.99.99",
        "cest": "", "codigoServico": "", "origem": 0, "informacoesAdicionais": "",
        "gtin": product["gtin"] if product else "", "cfop": "5102" if same_state else "6102",
        "impostos": {"valorAproximadoTotalTributos": dec((valor_total * D("0.3145")).quantize(CENT)),
                     "icms": {"st": 0, "origem": 0, "modalidade": 3, "aliquota": dec(aliquota),
                              "valor": dec((valor_total * aliquota / 100).quantize(CENT))}},
    }


def _apply_situacoes(rng: random.Random, ds: Dataset, cancelled_share: float) -> None:
    """Cancel a share of outgoing notes per month (never the month-edge ones, which tests use as fixed points)."""
    by_month: dict[str, list[int]] = {}
    for nid, note in ds.nfe.items():
        if note["tipo"] == 1 and note["situacao"] in (5, 6) and not _is_edge(note["dataEmissao"]):
            by_month.setdefault(note["dataEmissao"][:7], []).append(nid)
    total = 0
    for key in sorted(by_month):
        candidates = by_month[key]
        k = min(len(candidates), int(len(candidates) * cancelled_share + rng.random()))
        for nid in rng.sample(candidates, k):
            ds.nfe[nid]["situacao"] = 2
        total += k
    if total == 0 and cancelled_share > 0:
        pool = sorted(nid for ids in by_month.values() for nid in ids)
        if pool:
            ds.nfe[rng.choice(pool)]["situacao"] = 2


def _apply_mismatches(rng: random.Random, ds: Dataset, share: float) -> None:
    """Make sum(parcelas.valor) differ from valorNota on a few outgoing notes, as real data sometimes does."""
    pool = sorted(nid for nid, n in ds.nfe.items() if n["tipo"] == 1 and n["parcelas"] and n["situacao"] != 2)
    if not pool or share <= 0:
        return
    chosen = sorted(rng.sample(pool, max(1, round(len(pool) * share))))
    for nid in chosen:
        parcela = ds.nfe[nid]["parcelas"][-1]
        delta = D(rng.choice(("0.01", "-0.01", "5.00", "-10.00", "0.10")))
        if parcela["valor"] + delta <= 0:
            delta = abs(delta)
        parcela["valor"] = dec(parcela["valor"] + delta)
    ds.payment_mismatch_ids = chosen


def _is_edge(stamp: str) -> bool:
    return (stamp[8:10] == "01" and stamp.endswith(" 00:00:00")) or (stamp.endswith(" 23:59:59")
                                                                        and _is_last_day(stamp))
