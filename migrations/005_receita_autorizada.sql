-- Revenue is authorized invoices only. Leaving out Cancelada (2) is not enough: Pendente, Rejeitada, Denegada,
-- Bloqueada and the "aguardando" situações are invoices SEFAZ never authorized, so they are no sale. One rule in the
-- database, so every BI tool and every query gets the same number.
ALTER TABLE nfe_situacao ADD COLUMN conta_como_receita boolean NOT NULL DEFAULT false;
UPDATE nfe_situacao SET conta_como_receita = true WHERE codigo IN (5, 6);
COMMENT ON COLUMN nfe_situacao.conta_como_receita IS
    'true para as situações que contam como faturamento: 5 Autorizada e 6 Emitida DANFE (NF-e autorizada pela SEFAZ).';

-- A view's `n.*` is fixed when it is created: a later migration that adds a column to nfe recreates this view.
CREATE VIEW nfe_autorizada AS
    SELECT n.* FROM nfe n JOIN nfe_situacao s ON s.codigo = n.situacao WHERE s.conta_como_receita;
COMMENT ON VIEW nfe_autorizada IS
    'NF-e que contam como faturamento (situação 5 Autorizada ou 6 Emitida DANFE); use esta view para receita.';
