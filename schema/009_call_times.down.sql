-- Undo 009: every call writes its clinic's clinic_calls row again (as 006 made it).
DROP TRIGGER IF EXISTS keep_call_times ON queues;
DROP FUNCTION IF EXISTS mmc_keep_call_time();

INSERT INTO clinic_calls AS c (clinic_code, last_called_at)
SELECT clinic_code, max(called_at) FROM queues WHERE called_at IS NOT NULL
 GROUP BY clinic_code
ON CONFLICT (clinic_code) DO UPDATE
    SET last_called_at = greatest(c.last_called_at, excluded.last_called_at);

CREATE FUNCTION mmc_note_call() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO clinic_calls AS c (clinic_code, last_called_at)
    VALUES (NEW.clinic_code, NEW.called_at)
    ON CONFLICT (clinic_code) DO UPDATE
        SET last_called_at = greatest(c.last_called_at, excluded.last_called_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER note_calls AFTER UPDATE OF status ON queues
    FOR EACH ROW WHEN (NEW.status = 'CALLED' AND OLD.status IS DISTINCT FROM 'CALLED'
                       AND NEW.called_at IS NOT NULL)
    EXECUTE FUNCTION mmc_note_call();

CREATE OR REPLACE FUNCTION mmc_auto_call_ready(p_clinic clinics, p_now timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM queues
             WHERE clinic_code = p_clinic.code AND day = mmc_local_day(p_now)
               AND status IN ('CALLED', 'IN_PROGRESS')) < p_clinic.capacity
       AND NOT EXISTS (SELECT 1 FROM clinic_calls
                        WHERE clinic_code = p_clinic.code
                          AND last_called_at > p_now - make_interval(secs => p_clinic.call_interval))
       AND EXISTS (SELECT 1 FROM queues
                    WHERE clinic_code = p_clinic.code AND day = mmc_local_day(p_now)
                      AND status = 'WAITING')
$$;
