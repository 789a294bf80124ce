-- The record store, the population register and API clients (SQLite; same shape as the PostgreSQL schema).
--
-- Every patient-scoped table carries patient_key, the distribution column on Citus
-- (SELECT create_distributed_table('resource', 'patient_key') and likewise for every table marked
-- [patient]); [routing] tables are distributed by their own first key column; [reference] tables are
-- replicated to every node (create_reference_table). Primary keys of [patient] tables start with
-- patient_key so that they stay unique per shard. Times are epoch milliseconds (BIGINT) and calendar
-- dates ISO text, identical on SQLite and PostgreSQL.

-- [routing] HETU -> patient key. The HETU is an attribute, never a key in URLs or logs.
CREATE TABLE patient_hetu (
    hetu                TEXT PRIMARY KEY,
    patient_key         BIGINT NOT NULL,
    patient_resource_id TEXT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX patient_hetu_by_key ON patient_hetu (patient_key);

-- [routing] (type, id) -> patient key, so that GET /fhir/Type/id finds its shard.
CREATE TABLE resource_locator (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    patient_key   BIGINT NOT NULL,
    PRIMARY KEY (resource_type, id)
);

-- [patient] The current version of each patient-scoped resource.
CREATE TABLE resource (
    patient_key   BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  BIGINT NOT NULL,
    effective_at  BIGINT NOT NULL,
    status        TEXT,
    org_id        TEXT,
    body          TEXT NOT NULL,
    PRIMARY KEY (patient_key, resource_type, id)
);
CREATE INDEX resource_by_date ON resource (patient_key, resource_type, effective_at DESC, id DESC);

-- [patient] Every version, current included (vread, _history).
CREATE TABLE resource_version (
    patient_key   BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  BIGINT NOT NULL,
    org_id        TEXT,
    body          TEXT NOT NULL,
    PRIMARY KEY (patient_key, resource_type, id, version_id)
);

-- [patient] identifier system|value of the current versions.
CREATE TABLE resource_token (
    patient_key   BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL,
    id            TEXT NOT NULL
);
CREATE INDEX resource_token_lookup ON resource_token (patient_key, resource_type, system, value);
CREATE INDEX resource_token_by_value ON resource_token (resource_type, system, value);
CREATE INDEX resource_token_by_id ON resource_token (patient_key, resource_type, id);

-- [reference] Shared reference data: Organization, Practitioner, Location, Medication, ...
CREATE TABLE shared_resource (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  BIGINT NOT NULL,
    effective_at  BIGINT NOT NULL,
    status        TEXT,
    org_id        TEXT,
    body          TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE TABLE shared_resource_version (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  BIGINT NOT NULL,
    org_id        TEXT,
    body          TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);
CREATE TABLE shared_token (
    resource_type TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL,
    id            TEXT NOT NULL
);
CREATE INDEX shared_token_lookup ON shared_token (resource_type, system, value);
CREATE INDEX shared_token_by_id ON shared_token (resource_type, id);

-- [patient] The population register copy: one row per person (R-AUTH-2).
CREATE TABLE person (
    patient_key    BIGINT PRIMARY KEY,
    hetu           TEXT NOT NULL,
    family_name    TEXT NOT NULL,
    given_names    TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    deceased_date  TEXT,
    non_disclosure INTEGER NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- [patient] Relations about a person (the child / principal is patient_key) (R-MINOR-1).
CREATE TABLE relation (
    patient_key BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    holder_key  BIGINT NOT NULL,
    holder_hetu TEXT NOT NULL,
    start_date  TEXT,
    end_date    TEXT,
    custody     TEXT
);
CREATE INDEX relation_by_subject ON relation (patient_key);

-- [patient, by holder] The same relations seen from the holder ("whom may I act for"), written in
-- the same transaction as relation; distributed by holder_key.
CREATE TABLE relation_by_holder (
    holder_key   BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    subject_key  BIGINT NOT NULL,
    subject_hetu TEXT NOT NULL,
    start_date   TEXT,
    end_date     TEXT,
    custody      TEXT
);
CREATE INDEX relation_by_holder_key ON relation_by_holder (holder_key);

-- [reference] Systems that call the API (OAuth2 clients) and the organisation each acts for.
CREATE TABLE api_client (
    client_id     TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    roles         TEXT NOT NULL,
    secret_sha256 TEXT,
    jwks          TEXT,
    created_at    BIGINT NOT NULL
);

-- [routing] Client-assertion ids seen, so that a private_key_jwt assertion is used once.
CREATE TABLE client_assertion_jti (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
