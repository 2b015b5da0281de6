-- The caller's end-user id as a keyed hash (see the PostgreSQL migration).
ALTER TABLE record_meta ADD COLUMN end_user_hash TEXT;
CREATE INDEX record_meta_end_user ON record_meta (tenant_id, end_user_hash)
    WHERE end_user_hash IS NOT NULL;
