-- Audit records of a write, inserted in the write's own transaction (R-OPS-3, R-OPS-4): the write
-- and its records commit together. The one group-commit writer turns them into tree leaves, in
-- order, and removes them here in the same transaction; after a crash it finishes what is pending
-- before anything else. (SQLite appends a write's records to the tree in its transaction directly;
-- the table exists on both so that one text of the code serves both.)
-- [routing] by its own id: the one writer drains it by id (per-shard writers: issue 15).
CREATE TABLE audit_outbox (
    id          BIGSERIAL PRIMARY KEY,
    patient_key BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    body        TEXT NOT NULL
);
