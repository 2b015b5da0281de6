-- Whether a content row's bodies are sealed (encrypted), stored beside
-- them: a body in clear that happens to begin with the sealing header is
-- then never taken for a sealed one. Rows written before this column were
-- sealed exactly when their request body begins with that header
-- ("\0CSTENC1"); that once, the bytes decide.
ALTER TABLE record_content ADD COLUMN sealed boolean NOT NULL DEFAULT false;
UPDATE record_content SET sealed = true
 WHERE substring(request_body FROM 1 FOR 8) = '\x00435354454e4331'::bytea;

-- The same for kept fine-tune file copies. Their blobs are not in the
-- database, so rows from before this column have it NULL (unknown) and
-- are read by their header, as before.
ALTER TABLE file_copies ADD COLUMN sealed boolean;
