-- Keys or tenants suspended after confirmed abuse (retention class
-- "audit"). A lift is recorded in place; both are audited.
CREATE TABLE suspensions (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    -- NULL: the whole tenant.
    key_id     text,
    reason     text        NOT NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL,
    lifted_at  timestamptz,
    lifted_by  text
);
