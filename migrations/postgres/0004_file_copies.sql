-- Copies of fine-tune files kept in the blob store until the tenant deletes
-- the file through the gateway (retention class "files"). Bytes live in the
-- blob store; this row links them to the upstream's file id.
CREATE TABLE file_copies (
    tenant_id  text        NOT NULL,
    file_id    text        NOT NULL,
    object_key text        NOT NULL,
    filename   text,
    purpose    text        NOT NULL,
    bytes      bigint      NOT NULL,
    sha256     text        NOT NULL,
    record_id  uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, file_id)
);
