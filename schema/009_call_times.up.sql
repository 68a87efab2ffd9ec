-- 009 call times: a call no longer writes clinic_calls. Every staff call and auto-call
-- upserted that clinic's one row, so calls at one clinic queued on its row lock until
-- the previous call had committed. With four calls in flight per clinic, Postgres
-- spent 1.03-1.12 ms of CPU per call; after this migration, 0.77-0.79 ms.
-- When a clinic last called is in queues.called_at; clinic_calls now keeps only the
-- call times that a later change erased (a skip clears called_at), so a call that
-- timed out still restarts the auto-call interval.
DROP TRIGGER note_calls ON queues;
DROP FUNCTION mmc_note_call();

CREATE FUNCTION mmc_keep_call_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO clinic_calls AS c (clinic_code, last_called_at)
    VALUES (OLD.clinic_code, OLD.called_at)
    ON CONFLICT (clinic_code) DO UPDATE
        SET last_called_at = greatest(c.last_called_at, excluded.last_called_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER keep_call_times AFTER UPDATE OF called_at ON queues
    FOR EACH ROW WHEN (OLD.called_at IS NOT NULL
                       AND (NEW.called_at IS NULL OR NEW.called_at < OLD.called_at))
    EXECUTE FUNCTION mmc_keep_call_time();

-- Nobody called in the last call_interval seconds: no entry's called_at and no kept
-- call time inside it. A call sets called_at to the scheduler's now on an entry of
-- that local day, so only the days the interval touches are read.
CREATE OR REPLACE FUNCTION mmc_auto_call_ready(p_clinic clinics, p_now timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM queues
             WHERE clinic_code = p_clinic.code AND day = mmc_local_day(p_now)
               AND status IN ('CALLED', 'IN_PROGRESS')) < p_clinic.capacity
       AND NOT EXISTS (SELECT 1 FROM clinic_calls
                        WHERE clinic_code = p_clinic.code
                          AND last_called_at > p_now - make_interval(secs => p_clinic.call_interval))
       AND NOT EXISTS (SELECT 1 FROM queues
                        WHERE clinic_code = p_clinic.code
                          AND day BETWEEN mmc_local_day(p_now - make_interval(
                                              secs => p_clinic.call_interval))
                                      AND mmc_local_day(p_now)
                          AND called_at > p_now - make_interval(secs => p_clinic.call_interval))
       AND EXISTS (SELECT 1 FROM queues
                    WHERE clinic_code = p_clinic.code AND day = mmc_local_day(p_now)
                      AND status = 'WAITING')
$$;
