-- an update of a seeded contact's name (nothing a report counts), as PATCH writes it with its event
\set n random(1, 100000)
SELECT workspace_id AS ws, id AS cid FROM bench_ids WHERE n = :n \gset
BEGIN;
UPDATE contacts SET first_name = 'N' || :n, updated_at = now(), version = version + 1
WHERE workspace_id = ':ws' AND id = ':cid';
INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
VALUES (':ws', gen_random_uuid(), 'contact.updated', 'contact', ':cid', 'system:pgbench',
        jsonb_build_object('object', jsonb_build_object('id', ':cid'),
                           'previous', jsonb_build_object('first_name', 'x')), now());
COMMIT;
