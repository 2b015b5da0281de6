-- The audit log: append-only and hash-chained (DESIGN.md, "Abuse checks and
-- the review queue"). Each entry's hash covers the previous entry's hash and
-- the entry itself (crate::audit::entry_hash), so an edit, an insertion or a
-- gap breaks the chain; `custodian audit verify` checks it. Entries hold no
-- payload content. `details` is text, not jsonb, so the bytes that were
-- hashed are the bytes that are stored.
CREATE TABLE audit_log (
    seq       bigint      PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text        NOT NULL,
    action    text        NOT NULL,
    tenant_id text,
    subject   text,
    source    text        NOT NULL,
    details   text        NOT NULL,
    prev_hash text        NOT NULL,
    hash      text        NOT NULL
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);

-- The head of the chain. Appending updates this row first, which serialises
-- appenders (replicas included) without a table lock.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash text    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Which export took each record for training, so a re-run does not export a
-- record twice. Metadata retention: a mark expires with its record's metadata.
CREATE TABLE training_exports (
    record_id   uuid        PRIMARY KEY,
    export_id   uuid        NOT NULL,
    exported_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX training_exports_expires ON training_exports (expires_at);

-- The export reads usable records in (received_at, id) order.
CREATE INDEX record_meta_training ON record_meta (received_at, id) WHERE training_usable;
