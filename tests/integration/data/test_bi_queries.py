"""The BI queries the README and the demo show count as revenue only what Bling authorized (situação 5 or 6).

Pendente, Rejeitada, Denegada and the other in-between situações are invoices that were never valid sales; a query
that only leaves out Cancelada (2) reports them as revenue. The README's queries are run as written."""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from local.demo import EXAMPLE_QUERIES
from tests.integration.process_deps import account_db

README = Path(__file__).resolve().parents[3] / "README.md"
AUTHORIZED = (5, 6)


def readme_queries() -> dict[str, str]:
    """Each `-- title` comment of the README's sql block, mapped to the statement under it."""
    block = re.search(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    queries = {}
    for chunk in block.split("\n\n"):
        lines = chunk.strip().splitlines()
        title = lines[0].removeprefix("--").strip()
        queries[title] = "\n".join(line for line in lines[1:] if not line.lstrip().startswith("--"))
    return queries


def seed_one_invoice_per_situacao() -> None:
    """Invoice id = situação code * 100, valor 10 × code; one item (SKU A, quantity 1) and one parcela each."""
    account_db().execute("INSERT INTO forma_pagamento (id, descricao, tipo_pagamento, tipo_pagamento_descricao) "
               "VALUES (1, 'PIX', 17, 'PIX')")
    for code in range(1, 12):
        nfe_id, valor = code * 100, Decimal(10 * code)
        account_db().execute("INSERT INTO nfe (id, tipo, situacao, data_emissao, valor_nota, raw) "
                   "VALUES (%s, 1, %s, '2026-01-15 12:00:00-03', %s, '{}'::jsonb)", (nfe_id, code, valor))
        account_db().execute("INSERT INTO nfe_item (nfe_id, linha, codigo, descricao, quantidade, valor, valor_total) "
                   "VALUES (%s, 1, 'A', 'Produto A', 1, %s, %s)", (nfe_id, valor, valor))
        account_db().execute("INSERT INTO nfe_parcela (nfe_id, linha, valor, forma_pagamento_id) "
                   "VALUES (%s, 1, %s, 1)", (nfe_id, valor))


EXPECTED_REVENUE = sum(Decimal(10 * c) for c in AUTHORIZED)


def test_readme_revenue_queries_count_authorized_invoices_only(db_env):
    seed_one_invoice_per_situacao()
    queries = readme_queries()
    assert len(queries) == 3, queries.keys()
    (per_month,) = [q for t, q in queries.items() if t.startswith("Revenue per month")]
    (_mes, notas, faturamento), = account_db().fetch_all(per_month)
    assert (notas, faturamento) == (len(AUTHORIZED), EXPECTED_REVENUE)

    (top,) = [q for t, q in queries.items() if t.startswith("Top 10 products")]
    (_codigo, _nome, quantidade, total), = account_db().fetch_all(top)
    assert (quantidade, total) == (len(AUTHORIZED), EXPECTED_REVENUE)

    (by_payment,) = [q for t, q in queries.items() if t.startswith("Revenue by payment")]
    (_tipo, notas, valor), = account_db().fetch_all(by_payment)
    assert (notas, valor) == (len(AUTHORIZED), EXPECTED_REVENUE)


def test_demo_best_sellers_count_authorized_invoices_only(db_env):
    seed_one_invoice_per_situacao()
    (query,) = [q for title, q in EXAMPLE_QUERIES if title.startswith("Best-selling")]
    (_codigo, _nome, qtd, total), = account_db().fetch_all(query)
    assert (qtd, total) == (len(AUTHORIZED), EXPECTED_REVENUE)


def test_the_revenue_rule_lives_in_the_database(db_env):
    """One definition for every BI tool: nfe_situacao.conta_como_receita and the view nfe_autorizada."""
    database = account_db()
    flagged = [row[0] for row in database.fetch_all(
        "SELECT codigo FROM nfe_situacao WHERE conta_como_receita ORDER BY 1")]
    assert tuple(flagged) == AUTHORIZED
    seed_one_invoice_per_situacao()
    assert [row[0] for row in database.fetch_all("SELECT situacao FROM nfe_autorizada ORDER BY 1")] == list(AUTHORIZED)
