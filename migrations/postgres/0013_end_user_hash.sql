-- The caller's end-user id as a keyed hash (never in clear), so that one
-- end user's content can be erased on request (`custodian erase
-- --end-user`). NULL: none was sent, or no auth.end_user_key is configured.
ALTER TABLE record_meta ADD COLUMN end_user_hash text;
CREATE INDEX record_meta_end_user ON record_meta (tenant_id, end_user_hash)
    WHERE end_user_hash IS NOT NULL;
