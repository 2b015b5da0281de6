-- Bodies are compressed by the gateway (zstd) before they are sealed and
-- written; `compressed` says so for both bodies of a row. Rows from before
-- hold bodies as captured.
ALTER TABLE record_content ADD COLUMN compressed boolean NOT NULL DEFAULT false;

-- PostgreSQL's own TOAST compression (pglz) would try again on every body
-- over ~2 KB, spending CPU on zstd frames or ciphertext that do not shrink:
-- large bodies go out of line as they are. (Recurses to the partitions;
-- partitions created later inherit it.)
ALTER TABLE record_content ALTER COLUMN request_body SET STORAGE EXTERNAL;
ALTER TABLE record_content ALTER COLUMN response_body SET STORAGE EXTERNAL;
