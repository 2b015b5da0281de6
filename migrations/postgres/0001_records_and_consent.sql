-- Records are stored in two parts that expire apart (DESIGN.md, Retention).
-- Both tables are range-partitioned by expires_at so that retention is a
-- partition DROP, never a long DELETE. Partitions are created ahead by the
-- gateway (store::postgres::prepare_partitions): content by day, metadata by month.

CREATE TABLE record_meta (
    id                  uuid        NOT NULL,
    request_id          text        NOT NULL,
    tenant_id           text        NOT NULL,
    key_id              text        NOT NULL,
    route               text        NOT NULL,
    method              text        NOT NULL,
    path                text        NOT NULL,
    status              integer     NOT NULL,
    model               text,
    prompt_tokens       bigint,
    completion_tokens   bigint,
    total_tokens        bigint,
    streamed            boolean     NOT NULL,
    outcome             text        NOT NULL,
    total_us            bigint      NOT NULL,
    upstream_ttfb_us    bigint,
    upstream_total_us   bigint,
    request_bytes       bigint      NOT NULL,
    response_bytes      bigint      NOT NULL,
    training_usable     boolean     NOT NULL,
    training_basis      text        NOT NULL,
    profile             text        NOT NULL,
    policy_version      text        NOT NULL,
    zero_data_retention boolean     NOT NULL,
    received_at         timestamptz NOT NULL,
    content_expires_at  timestamptz,
    expires_at          timestamptz NOT NULL,
    PRIMARY KEY (id, expires_at)
) PARTITION BY RANGE (expires_at);

CREATE INDEX record_meta_tenant_received ON record_meta (tenant_id, received_at);
CREATE INDEX record_meta_received ON record_meta USING brin (received_at);

CREATE TABLE record_content (
    record_id          uuid        NOT NULL,
    tenant_id          text        NOT NULL,
    request_body       bytea       NOT NULL,
    request_truncated  boolean     NOT NULL,
    response_body      bytea       NOT NULL,
    response_truncated boolean     NOT NULL,
    received_at        timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (record_id, expires_at)
) PARTITION BY RANGE (expires_at);

-- Consent events are append-only: a change is a new row, never an update.
CREATE TABLE consent_events (
    id           bigserial   PRIMARY KEY,
    tenant_id    text        NOT NULL,
    opted_in     boolean     NOT NULL,
    effective_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    actor        text        NOT NULL,
    source       text        NOT NULL,
    note         text
);

CREATE INDEX consent_events_tenant ON consent_events (tenant_id, effective_at);

CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only';
END;
$$;

CREATE TRIGGER consent_events_no_update
    BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
