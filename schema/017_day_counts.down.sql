-- 017 down: the views count the day's entries again; the counts and their trigger go.

-- The public waiting-room view of one clinic: numbers only, never a patient ID.
CREATE OR REPLACE FUNCTION mmc_snapshot_clinic(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day)
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', jsonb_build_object(
        'clinic', c.code, 'name', c.name, 'name_ar', c.name_ar, 'floor', c.floor,
        'is_paused', c.is_paused,
        'called', coalesce((SELECT jsonb_agg(n ORDER BY t DESC, n DESC) FROM (
                    SELECT queue_number AS n, called_at AS t FROM queues q, d
                     WHERE q.clinic_code = c.code AND q.day = d.day AND q.called_at IS NOT NULL
                     ORDER BY called_at DESC, queue_number DESC LIMIT 5) x), '[]'::jsonb),
        'serving', coalesce((SELECT jsonb_agg(q.queue_number ORDER BY q.called_at, q.queue_number)
                    FROM queues q, d WHERE q.clinic_code = c.code AND q.day = d.day
                      AND q.status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'waiting', (SELECT count(*) FROM queues q, d WHERE q.clinic_code = c.code
                      AND q.day = d.day AND q.status = 'WAITING')))
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
        'called', coalesce((SELECT jsonb_agg(n ORDER BY t DESC) FROM (
                    SELECT queue_number AS n, called_at AS t FROM queues
                     WHERE clinic_code = p_clinic AND day = v_day AND called_at IS NOT NULL
                     ORDER BY called_at DESC, queue_number DESC LIMIT 5) x), '[]'::jsonb),
        'serving', coalesce((SELECT jsonb_agg(queue_number ORDER BY called_at, queue_number)
                    FROM queues WHERE clinic_code = p_clinic AND day = v_day
                      AND status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'served_today', (SELECT count(*) FROM queues WHERE clinic_code = p_clinic
                          AND day = v_day AND status = 'COMPLETED'),
        'mean_service_seconds', round(mmc_mean_service_seconds(p_clinic, v_day), 1)
    );
END;
$$;

CREATE OR REPLACE FUNCTION mmc_snapshot_staff(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day),
    pub AS (SELECT mmc_snapshot_clinic(p_clinic, p_now) AS s)
    SELECT jsonb_build_object('seq', pub.s->'seq', 'state', (pub.s->'state') || jsonb_build_object(
        'waiting_list', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'number', q.queue_number, 'patient', mmc_mask_patient(q.patient_id),
                'postpone_count', q.postpone_count, 'entered_at', q.entered_at)
                ORDER BY q.sort_key, q.queue_number)
              FROM queues q, d WHERE q.clinic_code = p_clinic AND q.day = d.day
                AND q.status = 'WAITING'), '[]'::jsonb),
        'serving_list', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'number', q.queue_number, 'patient', mmc_mask_patient(q.patient_id),
                'status', q.status, 'called_at', q.called_at, 'started_at', q.started_at)
                ORDER BY q.called_at, q.queue_number)
              FROM queues q, d WHERE q.clinic_code = p_clinic AND q.day = d.day
                AND q.status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'served_today', (SELECT count(*) FROM queues q, d WHERE q.clinic_code = p_clinic
                           AND q.day = d.day AND q.status = 'COMPLETED')))
      FROM pub WHERE pub.s IS NOT NULL
$$;

-- stats.dashboard: per clinic waiting, serving, served today, mean wait; totals.
CREATE OR REPLACE FUNCTION mmc_stats_dashboard(p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day),
    per AS (
        SELECT c.code, c.name, c.name_ar, c.floor, c.is_paused, c.capacity, c.sort_order,
               count(*) FILTER (WHERE q.status = 'WAITING') AS waiting,
               coalesce(jsonb_agg(q.queue_number ORDER BY q.called_at)
                        FILTER (WHERE q.status IN ('CALLED', 'IN_PROGRESS')), '[]') AS serving,
               count(*) FILTER (WHERE q.status = 'COMPLETED') AS served_today,
               count(*) FILTER (WHERE q.status = 'NO_SHOW') AS no_show_today,
               round((avg(extract(epoch FROM q.called_at - q.entered_at))
                      FILTER (WHERE q.called_at IS NOT NULL) / 60.0)::numeric, 1)
                   AS mean_wait_minutes
          FROM clinics c
          CROSS JOIN d
          LEFT JOIN queues q ON q.clinic_code = c.code AND q.day = d.day
         WHERE c.is_active
         GROUP BY c.code, c.name, c.name_ar, c.floor, c.is_paused, c.capacity, c.sort_order)
    SELECT jsonb_build_object(
        'day', (SELECT day FROM d),
        'clinics', coalesce((SELECT jsonb_agg(jsonb_build_object(
                       'clinic', code, 'name', name, 'name_ar', name_ar, 'floor', floor,
                       'is_paused', is_paused, 'capacity', capacity, 'waiting', waiting,
                       'serving', serving, 'served_today', served_today,
                       'no_show_today', no_show_today, 'mean_wait_minutes', mean_wait_minutes)
                       ORDER BY sort_order, code) FROM per), '[]'),
        'totals', (SELECT jsonb_build_object(
                       'waiting', coalesce(sum(waiting), 0),
                       'serving', coalesce(sum(jsonb_array_length(serving)), 0),
                       'served_today', coalesce(sum(served_today), 0),
                       'no_show_today', coalesce(sum(no_show_today), 0)) FROM per),
        'routes', (SELECT jsonb_build_object(
                       'active', count(*) FILTER (WHERE status = 'active'),
                       'completed', count(*) FILTER (WHERE status = 'completed'))
                     FROM routes WHERE day = (SELECT day FROM d)))
$$;

DROP FUNCTION IF EXISTS mmc_served_today(text, date);
DROP TRIGGER IF EXISTS count_day ON queues;
DROP FUNCTION IF EXISTS mmc_count_day();
DROP FUNCTION IF EXISTS mmc_day_count_add(text, date, integer, integer, integer, numeric);
DROP INDEX IF EXISTS idx_queues_called_recent;
DROP TABLE IF EXISTS clinic_day_counts;
