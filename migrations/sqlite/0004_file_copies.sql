-- Copies of fine-tune files (see the PostgreSQL migration).
CREATE TABLE file_copies (
    tenant_id  TEXT    NOT NULL,
    file_id    TEXT    NOT NULL,
    object_key TEXT    NOT NULL,
    filename   TEXT,
    purpose    TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    record_id  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, file_id)
);
