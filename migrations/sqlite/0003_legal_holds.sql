-- Legal holds (see the PostgreSQL migration).
CREATE TABLE legal_holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT    NOT NULL,
    record_id   BLOB,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    released_at INTEGER,
    released_by TEXT,
    CHECK (ends_at > created_at),
    CHECK (length(reason) > 0)
);

CREATE INDEX legal_holds_active ON legal_holds (tenant_id) WHERE released_at IS NULL;
