-- People and systems that use the admin API (retention class "audit"). Only
-- a SHA-256 hash of each bearer token is stored; revocation and expiry are
-- recorded in place.
CREATE TABLE principals (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    role       text        NOT NULL CHECK (role IN ('admin', 'reviewer', 'contractor', 'auditor')),
    token_hash text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
