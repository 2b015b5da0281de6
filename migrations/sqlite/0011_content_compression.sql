-- Bodies are compressed by the gateway (zstd) before they are sealed and
-- written; `compressed` says so for both bodies of a row. Rows from before
-- hold bodies as captured.
ALTER TABLE record_content ADD COLUMN compressed INTEGER NOT NULL DEFAULT 0;
