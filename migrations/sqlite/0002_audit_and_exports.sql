-- The audit log: append-only and hash-chained (see the PostgreSQL migration).
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    tenant_id TEXT,
    subject   TEXT,
    source    TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE training_exports (
    record_id   BLOB    NOT NULL PRIMARY KEY,
    export_id   BLOB    NOT NULL,
    exported_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE INDEX training_exports_expires ON training_exports (expires_at);

CREATE INDEX record_meta_training ON record_meta (received_at, id) WHERE training_usable;
