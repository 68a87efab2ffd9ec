-- Undo 008: positions for everyone at the clinic again (as 004 made it).
DROP FUNCTION IF EXISTS mmc_clinic_positions(text, timestamptz, text[]);

CREATE FUNCTION mmc_clinic_positions(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day),
    c AS (SELECT code, name, name_ar, floor, capacity,
                 mmc_mean_service_seconds(code, (SELECT day FROM d)) AS mean
            FROM clinics WHERE code = p_clinic),
    w AS (SELECT q.patient_id, q.queue_number, q.status,
                 (row_number() OVER (ORDER BY q.sort_key, q.queue_number) - 1)::integer AS ahead
            FROM queues q, d
           WHERE q.clinic_code = p_clinic AND q.day = d.day AND q.status = 'WAITING'),
    s AS (SELECT q.patient_id, q.queue_number, q.status, 0 AS ahead
            FROM queues q, d
           WHERE q.clinic_code = p_clinic AND q.day = d.day
             AND q.status IN ('CALLED', 'IN_PROGRESS')),
    everyone AS (SELECT * FROM w UNION ALL SELECT * FROM s)
    SELECT jsonb_build_object(
        'seq', mmc_head_seq(),
        'clinic', c.code, 'name', c.name, 'name_ar', c.name_ar, 'floor', c.floor,
        'near_ahead', coalesce(mmc_setting_int('notify_near_ahead'), 3),
        'positions', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'patient', e.patient_id, 'number', e.queue_number, 'status', e.status,
                'ahead', e.ahead,
                'eta_minutes', ceil(e.ahead * c.mean / c.capacity / 60.0)::integer))
              FROM everyone e), '[]'::jsonb))
      FROM c
$$;
