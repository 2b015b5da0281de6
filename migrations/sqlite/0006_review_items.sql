-- Review items (see the PostgreSQL migration).
CREATE TABLE review_items (
    record_id    BLOB    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    reasons      TEXT    NOT NULL,
    content_kept INTEGER NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'open',
    assignee     TEXT,
    resolution   TEXT,
    notes        TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

CREATE INDEX review_items_queue ON review_items (status, created_at);
CREATE INDEX review_items_expires ON review_items (expires_at);
