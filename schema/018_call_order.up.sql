-- 018 call order: a clinic's last five calls in the order of their events, which is the
-- order every display sees them. They were sorted by called_at, the time each command
-- arrived at its server: two calls through two servers can commit the other way round,
-- and a recall (which keeps its called_at) moves a number to the front of a display but
-- not of the snapshot, so a display loaded afresh could show another number as the
-- latest call than the one beside it. Each entry now keeps the id of its latest CALLED
-- or RECALLED event (written by mmc_emit, under the lock that orders the log), and the
-- views sort by it. A skip keeps it: the number was called, as the displays remember.

ALTER TABLE queues ADD COLUMN call_seq bigint;

-- Today's and earlier entries still in the log get theirs.
UPDATE queues q SET call_seq = e.id
  FROM (SELECT clinic_code, patient_id, queue_number, mmc_local_day(created_at) AS day,
               max(id) AS id
          FROM events WHERE event_type IN ('CALLED', 'RECALLED')
         GROUP BY 1, 2, 3, 4) e
 WHERE q.clinic_code = e.clinic_code AND q.patient_id = e.patient_id
   AND q.queue_number = e.queue_number AND q.day = e.day;

CREATE INDEX idx_queues_call_seq ON queues (clinic_code, day, call_seq DESC)
    WHERE call_seq IS NOT NULL;

CREATE OR REPLACE FUNCTION mmc_emit(p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_events IS NULL OR jsonb_array_length(p_events) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7171001);
    WITH logged AS (
        INSERT INTO events (event_type, clinic_code, patient_id, queue_number, data)
        SELECT e->>'type', e->>'clinic', e->>'patient', (e->>'number')::integer,
               coalesce(e->'data', '{}'::jsonb)
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(e, ord)
        ORDER BY ord
        RETURNING id, event_type, clinic_code, patient_id, queue_number)
    UPDATE queues q SET call_seq = l.id
      FROM logged l
     WHERE l.event_type IN ('CALLED', 'RECALLED')
       AND q.patient_id = l.patient_id AND q.clinic_code = l.clinic_code
       AND q.queue_number = l.queue_number AND q.status IN ('CALLED', 'IN_PROGRESS');
END;
$$;

-- The last five numbers called or recalled at a clinic on a day, the latest first.
CREATE FUNCTION mmc_recent_calls(p_clinic text, p_day date) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT jsonb_agg(n ORDER BY s DESC) FROM (
               SELECT queue_number AS n, call_seq AS s FROM queues
                WHERE clinic_code = p_clinic AND day = p_day AND call_seq IS NOT NULL
                ORDER BY call_seq DESC LIMIT 5) x), '[]'::jsonb)
$$;

CREATE OR REPLACE FUNCTION mmc_snapshot_clinic(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day)
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', jsonb_build_object(
        'clinic', c.code, 'name', c.name, 'name_ar', c.name_ar, 'floor', c.floor,
        'is_paused', c.is_paused,
        'called', mmc_recent_calls(c.code, (SELECT day FROM d)),
        'serving', coalesce((SELECT jsonb_agg(q.queue_number ORDER BY q.called_at, q.queue_number)
                    FROM queues q WHERE q.clinic_code = c.code AND q.day = (SELECT day FROM d)
                      AND q.status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'waiting', (SELECT count(*) FROM queues q WHERE q.clinic_code = c.code
                      AND q.day = (SELECT day FROM d) AND q.status = 'WAITING')))
      FROM clinics c WHERE c.code = p_clinic AND c.is_active
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
        'called', mmc_recent_calls(p_clinic, v_day),
        'serving', coalesce((SELECT jsonb_agg(queue_number ORDER BY called_at, queue_number)
                    FROM queues WHERE clinic_code = p_clinic AND day = v_day
                      AND status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'served_today', mmc_served_today(p_clinic, v_day),
        'mean_service_seconds', round(mmc_mean_service_seconds(p_clinic, v_day), 1)
    );
END;
$$;
