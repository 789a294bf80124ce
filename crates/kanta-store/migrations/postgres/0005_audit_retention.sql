-- Retention of the audit log (R-OPS-5): when a record's retention has passed, the retention job
-- empties its content (body = '', pruned_at set). Its place in the Merkle tree stays — sequence
-- number, batch, leaf hash, time, patient — so the log still verifies against every signed
-- checkpoint, and nothing can be removed or reordered. The database itself refuses any other change,
-- and refuses to empty a record younger than three years (1096 days, the shortest retention of the
-- citizen's view), whatever the job is told. The server's role (sql/app-role.sql) still has no
-- UPDATE on audit_record: the job runs as a role that does (`kanta audit prune`).
ALTER TABLE audit_record ADD COLUMN pruned_at BIGINT;

CREATE FUNCTION audit_record_prune_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL AND NEW.body = ''
       AND NEW.seq = OLD.seq AND NEW.patient_key = OLD.patient_key AND NEW.recorded_at = OLD.recorded_at
       AND NEW.batch = OLD.batch AND NEW.leaf_hash = OLD.leaf_hash
       AND OLD.recorded_at < (extract(epoch FROM now())::bigint - 94694400) * 1000 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$;
DROP TRIGGER audit_record_append_only ON audit_record;
CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_record
    FOR EACH ROW EXECUTE FUNCTION audit_record_prune_only();
