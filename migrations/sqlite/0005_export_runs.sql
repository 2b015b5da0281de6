-- Exports that finished (see the PostgreSQL migration). SQLite has no
-- TRUNCATE; its DELETE triggers already guard the append-only tables.
CREATE TABLE training_export_runs (
    export_id   BLOB    NOT NULL PRIMARY KEY,
    finished_at INTEGER NOT NULL
);
