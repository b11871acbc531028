-- Issue 10: the failure paths the chaos suite did not reach.
--
-- nfe.buscado_em: when the stored detail was fetched from Bling (GET /nfe/{id} sent). Two deliveries of one
-- invoice can fetch it in one order and commit in the other (payment-form lookups sit between fetch and commit);
-- the upsert keeps the newer fetch, so a stale one never overwrites it. NULL for rows loaded before this column.
ALTER TABLE nfe ADD COLUMN buscado_em timestamptz;
COMMENT ON COLUMN nfe.buscado_em IS 'Quando o detalhe gravado foi pedido ao Bling (GET /nfe/{id}); um detalhe buscado antes nunca substitui um buscado depois, e uma nota cancelada nunca volta a autorizada.';
COMMENT ON COLUMN nfe.xml IS 'Campo xml do Bling como enviado, inteiro (sem limite de tamanho), como em raw.';

-- etl_run.concluido_em: set once, by the one transaction that sees the last window of the run reach a final
-- listing status (listed or failed); the lister logs event="run_completed" only when its UPDATE set it.
ALTER TABLE etl_run ADD COLUMN concluido_em timestamptz;
COMMENT ON COLUMN etl_run.concluido_em IS 'Quando a última janela da execução chegou a listed ou failed (marcado uma única vez, mesmo com reentregas).';

-- Failed deliveries per message, counted only when the push carries no deliveryAttempt (Google's Pub/Sub
-- emulator omits it; Pub/Sub sends it whenever a subscription has a dead-letter policy, as ours all do): the
-- per-record retries (ADR 009) must know a message's last attempt to give one record up instead of letting it
-- reach the dead-letter topic.
CREATE TABLE etl_message_failures (
    topic          text NOT NULL,
    message_id     text NOT NULL,
    falhas         integer NOT NULL,
    atualizado_em  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, message_id)
);
COMMENT ON TABLE etl_message_failures IS 'Entregas falhas de uma mensagem Pub/Sub, contadas só quando o push não traz deliveryAttempt (emulador local).';
