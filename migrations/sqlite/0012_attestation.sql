-- What each policy version means (retention class "audit"): the effective
-- policy document a gateway ran under, stored once per `policy_version`
-- (`custodian attest`).
CREATE TABLE policy_documents (
    policy_version TEXT    PRIMARY KEY,
    document       TEXT    NOT NULL,
    first_seen_at  INTEGER NOT NULL
);

-- The last outcome of each periodic job whose running is part of the
-- proof (the retention sweep), one row per job (retention class "audit").
CREATE TABLE job_status (
    job            TEXT    PRIMARY KEY,
    last_ok_at     INTEGER,
    last_failed_at INTEGER,
    runs           INTEGER NOT NULL DEFAULT 0
);
