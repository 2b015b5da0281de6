-- The queue in the order reviewers work it (see the PostgreSQL migration).
CREATE INDEX review_items_by_severity ON review_items (
    status,
    (CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END),
    created_at,
    record_id
);
