-- One review item per flagged request (retention class "review"): it
-- expires with the content of its record. `reasons` is the JSON list of the
-- rules that matched (name, severity, action); no payload content.
CREATE TABLE review_items (
    record_id    uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    severity     text        NOT NULL,
    action       text        NOT NULL,
    reasons      text        NOT NULL,
    -- The record's content is stored (false for ZDR tenants: verdicts only).
    content_kept boolean     NOT NULL,
    status       text        NOT NULL DEFAULT 'open',
    assignee     text,
    resolution   text,
    notes        text        NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

CREATE INDEX review_items_queue ON review_items (status, created_at);
CREATE INDEX review_items_expires ON review_items (expires_at);
