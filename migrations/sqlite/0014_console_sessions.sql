-- Web console sessions and OpenID Connect sign-ins under way (see the
-- PostgreSQL migration). Instants are microseconds since the Unix epoch.
CREATE TABLE console_sessions (
    id_hash      TEXT    PRIMARY KEY,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    via          TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX console_sessions_principal ON console_sessions (principal_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

CREATE TABLE console_sign_ins (
    id_hash       TEXT    PRIMARY KEY,
    state         TEXT    NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX console_sign_ins_expiry ON console_sign_ins (expires_at);
