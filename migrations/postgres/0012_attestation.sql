-- What each policy version means (retention class "audit"): the effective
-- policy document a gateway ran under, stored once per `policy_version`,
-- so the hash on every record resolves to the policy itself
-- (`custodian attest`). `document` is text, not jsonb: the bytes stored
-- are the bytes hashed.
CREATE TABLE policy_documents (
    policy_version text        PRIMARY KEY,
    document       text        NOT NULL,
    first_seen_at  timestamptz NOT NULL
);

-- The last outcome of each periodic job whose running is part of the
-- proof (the retention sweep), one row per job (retention class "audit").
CREATE TABLE job_status (
    job            text        PRIMARY KEY,
    last_ok_at     timestamptz,
    last_failed_at timestamptz,
    runs           bigint      NOT NULL DEFAULT 0
);
