-- Upstream objects created through the gateway, with the tenant that owns
-- them (retention class "metadata"): a tenant may name, list and delete
-- only its own. A live object's row stays as long as the object; once the
-- owner deletes it, the row expires after the metadata retention.
CREATE TABLE upstream_objects (
    route      TEXT    NOT NULL,
    object_id  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    record_id  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    expires_at INTEGER,
    PRIMARY KEY (route, object_id)
);
CREATE INDEX upstream_objects_expires_at ON upstream_objects (expires_at)
    WHERE expires_at IS NOT NULL;
