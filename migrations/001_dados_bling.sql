-- Data copied from Bling API v3. Column names follow Bling's field names (snake_case), because our users know
-- them from Bling's screens and documentation. Every table keeps the raw JSON Bling returned (`raw`), so a field
-- we do not map yet is never lost. Money and quantities are NUMERIC (exact), ids BIGINT, and everything that
-- looks like a number but is an identifier (numero, chave de acesso, CPF/CNPJ, CEP) is TEXT.

CREATE TABLE nfe_situacao (
    codigo     smallint PRIMARY KEY,
    descricao  text NOT NULL
);
COMMENT ON TABLE nfe_situacao IS 'Códigos de situação de NF-e do Bling (enum da API v3).';
INSERT INTO nfe_situacao (codigo, descricao) VALUES
    (1, 'Pendente'), (2, 'Cancelada'), (3, 'Aguardando recibo'), (4, 'Rejeitada'), (5, 'Autorizada'),
    (6, 'Emitida DANFE'), (7, 'Registrada'), (8, 'Aguardando protocolo'), (9, 'Denegada'),
    (10, 'Consulta situação'), (11, 'Bloqueada');

CREATE TABLE forma_pagamento (
    id                        bigint PRIMARY KEY,
    descricao                 text,
    tipo_pagamento            smallint,
    tipo_pagamento_descricao  text,
    situacao                  smallint,
    fixa                      boolean,
    padrao                    smallint,
    finalidade                smallint,
    encontrada                boolean NOT NULL DEFAULT true,
    raw                       jsonb,
    atualizado_em             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE forma_pagamento IS 'Formas de pagamento referenciadas pelas parcelas (GET /formas-pagamentos/{id}); encontrada=false quando o Bling respondeu 404.';

CREATE TABLE nfe (
    id                              bigint PRIMARY KEY,
    tipo                            smallint NOT NULL CHECK (tipo = 1),
    situacao                        smallint NOT NULL,
    numero                          text,
    serie                           integer,
    data_emissao                    timestamptz,
    data_emissao_raw                text,
    data_operacao                   timestamptz,
    data_operacao_raw               text,
    chave_acesso                    text,
    contato_id                      bigint,
    contato_nome                    text,
    contato_tipo_pessoa             text,
    contato_numero_documento        text,
    contato_ie                      text,
    contato_rg                      text,
    contato_contribuinte            smallint,
    contato_telefone                text,
    contato_email                   text,
    contato_endereco                text,
    contato_numero                  text,
    contato_complemento             text,
    contato_bairro                  text,
    contato_cep                     text,
    contato_municipio               text,
    contato_uf                      text,
    contato_pais                    text,
    natureza_operacao_id            bigint,
    loja_id                         bigint,
    loja_numero                     text,
    valor_nota                      numeric,
    valor_frete                     numeric,
    finalidade                      smallint,
    tipo_nota                       text,
    xml                             text,
    link_danfe                      text,
    link_pdf                        text,
    optante_simples_nacional        boolean,
    numero_pedido_loja              text,
    vendedor_id                     bigint,
    transporte_frete_por_conta      smallint,
    transportador_nome              text,
    transportador_numero_documento  text,
    raw                             jsonb NOT NULL,
    carregado_em                    timestamptz NOT NULL DEFAULT now(),
    atualizado_em                   timestamptz NOT NULL DEFAULT now(),
    ultima_execucao                 text
);
COMMENT ON TABLE nfe IS 'NF-e de saída (tipo=1) do Bling, incluindo canceladas (situacao=2). Cabeçalho de GET /nfe/{id}; datas em timestamptz (hora local de São Paulo) mais o texto original em *_raw.';
COMMENT ON COLUMN nfe.situacao IS 'Ver nfe_situacao: 2 = cancelada; 5/6 = autorizada/emitida.';
CREATE INDEX nfe_data_emissao_idx ON nfe (data_emissao);
CREATE INDEX nfe_contato_id_idx ON nfe (contato_id);
CREATE INDEX nfe_situacao_idx ON nfe (situacao);
CREATE INDEX nfe_chave_acesso_idx ON nfe (chave_acesso);

CREATE TABLE nfe_item (
    nfe_id                  bigint NOT NULL REFERENCES nfe (id) ON DELETE CASCADE,
    linha                   integer NOT NULL CHECK (linha >= 1),
    codigo                  text,
    descricao               text,
    unidade                 text,
    quantidade              numeric,
    valor                   numeric,
    valor_total             numeric,
    tipo                    text,
    peso_bruto              numeric,
    peso_liquido            numeric,
    numero_pedido_compra    text,
    classificacao_fiscal    text,
    cest                    text,
    codigo_servico          text,
    origem                  smallint,
    informacoes_adicionais  text,
    gtin                    text,
    cfop                    text,
    impostos                jsonb,
    PRIMARY KEY (nfe_id, linha)
);
COMMENT ON TABLE nfe_item IS 'Itens da NF-e, uma linha por item na ordem do Bling (linha 1..n). O mesmo código pode aparecer em várias linhas. valor = preço unitário; valor_total = total da linha.';
CREATE INDEX nfe_item_codigo_idx ON nfe_item (codigo);

CREATE TABLE nfe_parcela (
    nfe_id              bigint NOT NULL REFERENCES nfe (id) ON DELETE CASCADE,
    linha               integer NOT NULL CHECK (linha >= 1),
    data                date,
    valor               numeric,
    observacoes         text,
    caut                text,
    forma_pagamento_id  bigint REFERENCES forma_pagamento (id),
    PRIMARY KEY (nfe_id, linha)
);
COMMENT ON TABLE nfe_parcela IS 'Parcelas (pagamentos) da NF-e; o tipo de pagamento está em forma_pagamento.';
CREATE INDEX nfe_parcela_forma_idx ON nfe_parcela (forma_pagamento_id);

CREATE TABLE contato (
    id                   bigint PRIMARY KEY,
    encontrado           boolean NOT NULL DEFAULT true,
    nome                 text,
    codigo               text,
    situacao             text,
    numero_documento     text,
    telefone             text,
    celular              text,
    fantasia             text,
    tipo                 text,
    indicador_ie         smallint,
    ie                   text,
    rg                   text,
    inscricao_municipal  text,
    email                text,
    email_nota_fiscal    text,
    endereco             text,
    numero               text,
    complemento          text,
    bairro               text,
    cep                  text,
    municipio            text,
    uf                   text,
    pais                 text,
    vendedor_id          bigint,
    raw                  jsonb,
    atualizado_em        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE contato IS 'Contatos (clientes) referenciados pelas NF-e (GET /contatos/{id}); endereço = endereco.geral. encontrado=false quando o Bling respondeu 404.';
CREATE INDEX contato_numero_documento_idx ON contato (numero_documento);

CREATE TABLE produto (
    id              bigint PRIMARY KEY,
    codigo          text,
    nome            text,
    tipo            text,
    situacao        text,
    formato         text,
    preco           numeric,
    preco_custo     numeric,
    unidade         text,
    gtin            text,
    marca           text,
    ncm             text,
    cest            text,
    categoria_id    bigint,
    id_produto_pai  bigint,
    descricao_curta text,
    raw             jsonb NOT NULL,
    atualizado_em   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE produto IS 'Produtos referenciados pelos itens das NF-e (GET /produtos/{id}); preco_custo = fornecedor.precoCusto.';
CREATE INDEX produto_codigo_idx ON produto (codigo);

CREATE TABLE produto_sku (
    codigo        text PRIMARY KEY,
    produto_id    bigint REFERENCES produto (id),
    encontrado    boolean NOT NULL,
    verificado_em timestamptz NOT NULL DEFAULT now(),
    CHECK (encontrado = (produto_id IS NOT NULL))
);
COMMENT ON TABLE produto_sku IS 'Resolução de cada código (SKU) dos itens para um produto, via GET /produtos?codigos[]=SKU&criterio=5 aceitando só codigo idêntico. encontrado=false: o Bling não conhece o SKU (nunca adivinhado).';
