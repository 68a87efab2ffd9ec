-- 018 down: the last calls are sorted by called_at again; call_seq goes.

CREATE OR REPLACE FUNCTION mmc_emit(p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_events IS NULL OR jsonb_array_length(p_events) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7171001);
    INSERT INTO events (event_type, clinic_code, patient_id, queue_number, data)
    SELECT e->>'type', e->>'clinic', e->>'patient', (e->>'number')::integer,
           coalesce(e->'data', '{}'::jsonb)
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(e, ord)
    ORDER BY ord;
END;
$$;

-- The public waiting-room view of one clinic: numbers only, never a patient ID.
CREATE OR REPLACE FUNCTION mmc_snapshot_clinic(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day)
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', jsonb_build_object(
        'clinic', c.code, 'name', c.name, 'name_ar', c.name_ar, 'floor', c.floor,
        'is_paused', c.is_paused,
        'called', coalesce((SELECT jsonb_agg(n ORDER BY t DESC, n DESC) FROM (
                    SELECT queue_number AS n, called_at AS t FROM queues q
                     WHERE q.clinic_code = c.code AND q.day = (SELECT day FROM d)
                       AND q.called_at IS NOT NULL
                     ORDER BY called_at DESC, queue_number DESC LIMIT 5) x), '[]'::jsonb),
        'serving', coalesce((SELECT jsonb_agg(q.queue_number ORDER BY q.called_at, q.queue_number)
                    FROM queues q WHERE q.clinic_code = c.code AND q.day = (SELECT day FROM d)
                      AND q.status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'waiting', (SELECT count(*) FROM queues q WHERE q.clinic_code = c.code
                      AND q.day = (SELECT day FROM d) AND q.status = 'WAITING')))
      FROM clinics c WHERE c.code = p_clinic AND c.is_active
$$;

CREATE OR REPLACE FUNCTION mmc_served_today(p_clinic text, p_day date) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT completed FROM clinic_day_counts
                      WHERE clinic_code = p_clinic AND day = p_day), 0)
$$;

-- queue.status for a clinic: numbers only.
CREATE OR REPLACE FUNCTION mmc_clinic_status(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_clinic clinics := mmc_clinic(p_clinic);
BEGIN
    RETURN jsonb_build_object(
        'clinic', v_clinic.code,
        'name', v_clinic.name,
        'name_ar', v_clinic.name_ar,
        'floor', v_clinic.floor,
        'is_paused', v_clinic.is_paused,
        'capacity', v_clinic.capacity,
        'total_waiting', mmc_waiting_count(p_clinic, v_day),
        'called', coalesce((SELECT jsonb_agg(n ORDER BY t DESC) FROM (
                    SELECT queue_number AS n, called_at AS t FROM queues
                     WHERE clinic_code = p_clinic AND day = v_day AND called_at IS NOT NULL
                     ORDER BY called_at DESC, queue_number DESC LIMIT 5) x), '[]'::jsonb),
        'serving', coalesce((SELECT jsonb_agg(queue_number ORDER BY called_at, queue_number)
                    FROM queues WHERE clinic_code = p_clinic AND day = v_day
                      AND status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'served_today', mmc_served_today(p_clinic, v_day),
        'mean_service_seconds', round(mmc_mean_service_seconds(p_clinic, v_day), 1)
    );
END;
$$;

DROP FUNCTION mmc_recent_calls(text, date);
DROP INDEX idx_queues_call_seq;
ALTER TABLE queues DROP COLUMN call_seq;
