-- The PostgreSQL role the kanta server runs as in production (R-OPS-4): it reads and writes records,
-- sessions and the audit outbox, but on the audit log it may only INSERT and SELECT (the tree's one
-- state row it moves forward); it cannot create, alter or drop anything, so it cannot migrate —
-- the server checks the schema version at start instead. Migrations and retention run as the owner:
-- `kanta migrate --app-role <role>` migrates and then applies this file with :app_role replaced
-- (the role must exist: CREATE ROLE kanta_app LOGIN PASSWORD '…').
GRANT USAGE ON SCHEMA public TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    patient_hetu, resource_locator, resource, resource_version, resource_token,
    shared_resource, shared_resource_version, shared_token,
    person, relation, relation_by_holder, api_client, client_assertion_jti,
    portal_session, portal_login
    TO :app_role;
-- The outbox: a write's records go in with it, the writer takes them out as leaves.
GRANT SELECT, INSERT, DELETE ON audit_outbox TO :app_role;
GRANT USAGE ON SEQUENCE audit_outbox_id_seq TO :app_role;
-- The log itself: append-only.
GRANT SELECT, INSERT ON audit_record, audit_checkpoint TO :app_role;
GRANT SELECT, UPDATE ON audit_state TO :app_role;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_record, audit_checkpoint FROM :app_role;
-- The schema version, which the server checks at start.
GRANT SELECT ON _sqlx_migrations TO :app_role;
