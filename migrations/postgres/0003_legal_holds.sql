-- Legal holds keep a tenant's records, or one record, past their expiry
-- until the hold ends or is released (DESIGN.md, Retention). Rows are never
-- deleted: a release is recorded in place, and every change is audited.
CREATE TABLE legal_holds (
    id          bigserial   PRIMARY KEY,
    tenant_id   text        NOT NULL,
    -- NULL: every record of the tenant.
    record_id   uuid,
    reason      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    released_at timestamptz,
    released_by text,
    CHECK (ends_at > created_at),
    CHECK (length(reason) > 0)
);

CREATE INDEX legal_holds_active ON legal_holds (tenant_id) WHERE released_at IS NULL;
