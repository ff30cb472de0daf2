-- a contact created in lead and its contact.created event (whose trigger writes the lifecycle entry), as the
-- API's create writes them (bench/triggers_pgbench.sh)
SELECT gen_random_uuid() AS cid, (SELECT id FROM workspaces ORDER BY created_at LIMIT 1) AS ws \gset
BEGIN;
INSERT INTO contacts (workspace_id, id, created_at, updated_at, version, email, first_name, lifecycle_stage,
                      tags, custom_fields, external_ids, marketing_consent, search_text)
VALUES (':ws', ':cid', now(), now(), 1, 'pgb-' || ':cid' || '@example.com', 'P', 'lead', '{}', '{}', '{}',
        false, 'p');
INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, created_at)
VALUES (':ws', gen_random_uuid(), 'contact.created', 'contact', ':cid', 'system:pgbench',
        jsonb_build_object('object', jsonb_build_object('id', ':cid', 'lifecycle_stage', 'lead'),
                           'previous', '{}'::jsonb), now());
COMMIT;
