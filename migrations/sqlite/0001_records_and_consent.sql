-- Records are stored in two parts that expire apart (DESIGN.md, Retention).
-- Instants are INTEGER microseconds since the Unix epoch (UTC), so that
-- comparisons and the expires_at index are exact.

CREATE TABLE record_meta (
    id                  BLOB    NOT NULL PRIMARY KEY,
    request_id          TEXT    NOT NULL,
    tenant_id           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    method              TEXT    NOT NULL,
    path                TEXT    NOT NULL,
    status              INTEGER NOT NULL,
    model               TEXT,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    total_tokens        INTEGER,
    streamed            INTEGER NOT NULL,
    outcome             TEXT    NOT NULL,
    total_us            INTEGER NOT NULL,
    upstream_ttfb_us    INTEGER,
    upstream_total_us   INTEGER,
    request_bytes       INTEGER NOT NULL,
    response_bytes      INTEGER NOT NULL,
    training_usable     INTEGER NOT NULL,
    training_basis      TEXT    NOT NULL,
    profile             TEXT    NOT NULL,
    policy_version      TEXT    NOT NULL,
    zero_data_retention INTEGER NOT NULL,
    received_at         INTEGER NOT NULL,
    content_expires_at  INTEGER,
    expires_at          INTEGER NOT NULL
);

CREATE INDEX record_meta_expires ON record_meta (expires_at);
CREATE INDEX record_meta_tenant_received ON record_meta (tenant_id, received_at);

CREATE TABLE record_content (
    record_id          BLOB    NOT NULL PRIMARY KEY,
    tenant_id          TEXT    NOT NULL,
    request_body       BLOB    NOT NULL,
    request_truncated  INTEGER NOT NULL,
    response_body      BLOB    NOT NULL,
    response_truncated INTEGER NOT NULL,
    received_at        INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL
);

CREATE INDEX record_content_expires ON record_content (expires_at);

-- Consent events are append-only: a change is a new row, never an update.
CREATE TABLE consent_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT    NOT NULL,
    opted_in     INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    note         TEXT
);

CREATE INDEX consent_events_tenant ON consent_events (tenant_id, effective_at);

CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only');
END;

CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only');
END;
