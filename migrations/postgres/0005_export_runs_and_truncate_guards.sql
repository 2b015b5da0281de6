-- Exports that finished: only their marks keep a record from being exported
-- again (an abandoned export's marks do not hide records from the next one).
CREATE TABLE training_export_runs (
    export_id   uuid        PRIMARY KEY,
    finished_at timestamptz NOT NULL
);

-- Row triggers do not see TRUNCATE: refuse it too on append-only tables.
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER consent_events_no_truncate
    BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
