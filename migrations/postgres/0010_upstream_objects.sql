-- Upstream objects created through the gateway, with the tenant that owns
-- them (retention class "metadata"): a tenant may name, list and delete
-- only its own. A live object's row stays as long as the object; once it
-- is deleted (by its owner, or by the gateway when its profile lets
-- objects that hold payloads expire), the row expires after the metadata
-- retention.
CREATE TABLE upstream_objects (
    route      text        NOT NULL,
    object_id  text        NOT NULL,
    kind       text        NOT NULL,
    tenant_id  text        NOT NULL,
    record_id  uuid        NOT NULL,
    -- The collection's path as the creating request gave it, after the
    -- route's prefix (`files`, `v1/messages/batches`): where to delete it.
    collection text        NOT NULL,
    created_at timestamptz NOT NULL,
    -- When the gateway deletes it upstream (content retention), if ever.
    purge_at   timestamptz,
    deleted_at timestamptz,
    expires_at timestamptz,
    PRIMARY KEY (route, object_id)
);
CREATE INDEX upstream_objects_expires_at ON upstream_objects (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX upstream_objects_purge_at ON upstream_objects (purge_at)
    WHERE purge_at IS NOT NULL AND deleted_at IS NULL;
