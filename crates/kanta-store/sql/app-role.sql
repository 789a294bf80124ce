-- The PostgreSQL role the kanta server runs as in production (R-OPS-4): it reads and writes records,
-- but on the audit log it may only INSERT and SELECT. Migrations run as the owner (`kanta migrate`),
-- the server connects as :app_role. Run as the database owner after migrating, replacing :app_role.
GRANT USAGE ON SCHEMA public TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    patient_hetu, resource_locator, resource, resource_version, resource_token,
    shared_resource, shared_resource_version, shared_token,
    person, relation, relation_by_holder, api_client, client_assertion_jti
    TO :app_role;
GRANT SELECT, INSERT ON audit_record, audit_checkpoint TO :app_role;
GRANT SELECT, UPDATE ON audit_state TO :app_role;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_record, audit_checkpoint FROM :app_role;
