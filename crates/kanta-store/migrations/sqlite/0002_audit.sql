-- The audit log (R-OPS-3, R-OPS-4): append-only records hashed into a Merkle tree (RFC 9162),
-- with signed checkpoints. Same shape as the PostgreSQL schema; see its comments.
CREATE TABLE audit_record (
    patient_key BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    batch       BIGINT NOT NULL,
    leaf_hash   BLOB NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (patient_key, seq)
);
CREATE INDEX audit_record_by_seq ON audit_record (seq);
CREATE INDEX audit_record_by_patient_time ON audit_record (patient_key, recorded_at DESC);

CREATE TABLE audit_state (
    id        INTEGER PRIMARY KEY,
    tree_size BIGINT NOT NULL,
    batch     BIGINT NOT NULL,
    frontier  TEXT NOT NULL
);
INSERT INTO audit_state (id, tree_size, batch, frontier) VALUES (1, 0, 0, '');

CREATE TABLE audit_checkpoint (
    tree_size  BIGINT PRIMARY KEY,
    root_hash  BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit_record refused'); END;
CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit_record refused'); END;
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit_checkpoint refused'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit_checkpoint refused'); END;
