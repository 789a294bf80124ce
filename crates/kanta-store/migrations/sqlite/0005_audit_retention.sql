-- Retention of the audit log (R-OPS-5): when a record's retention has passed, the retention job
-- empties its content (body = '', pruned_at set). Its place in the Merkle tree stays — sequence
-- number, batch, leaf hash, time, patient — so the log still verifies against every signed
-- checkpoint, and nothing can be removed or reordered. The database itself refuses any other change,
-- and refuses to empty a record younger than three years (1096 days, the shortest retention of the
-- citizen's view), whatever the job is told.
ALTER TABLE audit_record ADD COLUMN pruned_at BIGINT;

DROP TRIGGER audit_record_no_update;
CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record
WHEN NOT (
    OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL AND NEW.body = ''
    AND NEW.seq = OLD.seq AND NEW.patient_key = OLD.patient_key AND NEW.recorded_at = OLD.recorded_at
    AND NEW.batch = OLD.batch AND NEW.leaf_hash = OLD.leaf_hash
    AND OLD.recorded_at < (CAST(strftime('%s', 'now') AS INTEGER) - 94694400) * 1000
)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit_record refused'); END;
