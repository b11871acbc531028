-- Audit of what the pipeline did: one row per run (a daily message, a month backfill, an explicit range), one
-- row per window of a run, and one row per NF-e seen in a window with what happened to it. The window counts are
-- derived from etl_window_nfe (a view), so a redelivered message can never count an invoice twice.

CREATE TABLE etl_run (
    run_id        text PRIMARY KEY,
    tipo          text NOT NULL CHECK (tipo IN ('daily', 'month', 'range')),
    pedido        jsonb NOT NULL,
    inicio        date NOT NULL,
    fim           date NOT NULL,
    criado_em     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE etl_run IS 'Uma execução pedida ao scheduler (diária, mês de backfill ou intervalo).';

CREATE TABLE etl_window (
    run_id          text NOT NULL REFERENCES etl_run (run_id),
    inicio          date NOT NULL,
    fim             date NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'listing', 'listed', 'failed')),
    paginas         integer NOT NULL DEFAULT 0,
    chamadas_api    integer NOT NULL DEFAULT 0,
    respostas_429   integer NOT NULL DEFAULT 0,
    erro            text,
    criado_em       timestamptz NOT NULL DEFAULT now(),
    listado_em      timestamptz,
    atualizado_em   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, inicio, fim),
    CHECK (fim >= inicio)
);
COMMENT ON TABLE etl_window IS 'Janelas de datas de emissão de uma execução; status da listagem (GET /nfe) e chamadas à API feitas pela listagem.';

CREATE TABLE etl_window_nfe (
    run_id         text NOT NULL,
    inicio         date NOT NULL,
    fim            date NOT NULL,
    nfe_id         bigint NOT NULL,
    situacao_lista smallint NOT NULL,
    resultado      text NOT NULL DEFAULT 'listed'
                   CHECK (resultado IN ('listed', 'new', 'updated', 'cancelled', 'unchanged', 'skipped', 'failed')),
    detalhe        text,
    chamadas_api   integer NOT NULL DEFAULT 0,
    atualizado_em  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, inicio, fim, nfe_id),
    FOREIGN KEY (run_id, inicio, fim) REFERENCES etl_window (run_id, inicio, fim)
);
COMMENT ON TABLE etl_window_nfe IS 'Cada NF-e listada numa janela e o que o detail fez com ela: new, updated, cancelled (passou a cancelada), unchanged (já carregada, sem chamada), skipped (ex.: nota de entrada), failed.';
CREATE INDEX etl_window_nfe_nfe_idx ON etl_window_nfe (nfe_id);

CREATE VIEW etl_window_resumo AS
SELECT w.run_id, w.inicio, w.fim, w.status, w.paginas,
       count(n.nfe_id)                                         AS listadas,
       count(*) FILTER (WHERE n.resultado = 'new')             AS novas,
       count(*) FILTER (WHERE n.resultado = 'updated')         AS atualizadas,
       count(*) FILTER (WHERE n.resultado = 'cancelled')       AS canceladas,
       count(*) FILTER (WHERE n.resultado = 'unchanged')       AS inalteradas,
       count(*) FILTER (WHERE n.resultado = 'skipped')         AS ignoradas,
       count(*) FILTER (WHERE n.resultado = 'failed')          AS falhas,
       count(*) FILTER (WHERE n.resultado = 'listed')          AS pendentes,
       w.chamadas_api + coalesce(sum(n.chamadas_api), 0)        AS chamadas_api,
       w.respostas_429, w.erro, w.criado_em, w.listado_em
FROM etl_window w
LEFT JOIN etl_window_nfe n USING (run_id, inicio, fim)
GROUP BY w.run_id, w.inicio, w.fim;
COMMENT ON VIEW etl_window_resumo IS 'Contagens por janela: listadas, novas, atualizadas, canceladas, inalteradas, ignoradas, falhas, pendentes e chamadas à API.';
