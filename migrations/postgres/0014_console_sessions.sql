-- Web console sessions (retention class "session"): only a SHA-256 hash of
-- each session cookie is stored. A session ends at sign-out, at its
-- principal's revocation, or when idle or past `expires_at` (its absolute
-- end); the sweeper removes rows past `expires_at`.
CREATE TABLE console_sessions (
    id_hash      text        PRIMARY KEY,
    principal_id bigint      NOT NULL REFERENCES principals (id),
    -- How it was opened: 'token', or 'oidc:<issuer subject>'.
    via          text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX console_sessions_principal ON console_sessions (principal_id) WHERE ended_at IS NULL;
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- OpenID Connect sign-ins under way (retention class "session"): the state,
-- nonce and PKCE verifier of one authorization request, bound to the
-- browser that started it by a cookie whose hash is the key; taken (deleted)
-- by the callback, so a replayed callback finds nothing.
CREATE TABLE console_sign_ins (
    id_hash       text        PRIMARY KEY,
    state         text        NOT NULL,
    nonce         text        NOT NULL,
    pkce_verifier text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_sign_ins_expiry ON console_sign_ins (expires_at);
