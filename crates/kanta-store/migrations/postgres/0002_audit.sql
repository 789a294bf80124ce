-- The audit log (R-OPS-3, R-OPS-4): append-only records hashed into a Merkle tree (RFC 9162),
-- with signed checkpoints.
--
-- audit_record [patient]: one row per patient touched (patient_key 0 = about no patient); seq is the
-- leaf index in the log. body is the canonical JSON that leaf_hash = SHA-256(0x00 || body) covers.
CREATE TABLE audit_record (
    patient_key BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    batch       BIGINT NOT NULL,
    leaf_hash   BYTEA NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (patient_key, seq)
);
CREATE INDEX audit_record_by_seq ON audit_record (seq);
CREATE INDEX audit_record_by_patient_time ON audit_record (patient_key, recorded_at DESC);

-- [reference] The writer's position: tree size and the right edge of the tree (hex, one hash per
-- set bit of tree_size). Only the audit writer updates it, once per batch.
CREATE TABLE audit_state (
    id        INTEGER PRIMARY KEY,
    tree_size BIGINT NOT NULL,
    batch     BIGINT NOT NULL,
    frontier  TEXT NOT NULL
);
INSERT INTO audit_state (id, tree_size, batch, frontier) VALUES (1, 0, 0, '');

-- [reference] Signed checkpoints (C2SP signed-note format) of the tree.
CREATE TABLE audit_checkpoint (
    tree_size  BIGINT PRIMARY KEY,
    root_hash  BYTEA NOT NULL,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_record
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_record_no_truncate BEFORE TRUNCATE ON audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
