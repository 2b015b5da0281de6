-- The key store: data keys wrapped by a key-encryption key. It lives in a
-- database of its own, apart from the content it opens, so that a backup
-- of the content never carries its keys. A row is destroyed when its day
-- of content has expired (crypto-shredding).
CREATE TABLE custodian_keys (
    name       text PRIMARY KEY,          -- content-<day> | file-<record id>
    kek_id     text NOT NULL,             -- which KEK wraps it
    wrapped    bytea NOT NULL,            -- nonce || ciphertext || tag
    created_at timestamptz NOT NULL DEFAULT now()
);
