-- 004 realtime: what the hub (server/hub.py) and the views (server/views.py) read.
-- The events table is the ordered log (ids commit in id order, see mmc_emit); this
-- adds the retention watermark that tells whether a client can still resume, the
-- snapshot functions (each returns its state with the highest event id visible to
-- the same statement, so "snapshot, then events above its seq" never misses or
-- repeats one) and the set-based position query behind the patient notices.

-- The highest event id ever pruned: a client that has seen seq N can resume iff
-- N >= pruned_through, because every event above it is still in the table.
CREATE TABLE event_watermark (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through  bigint NOT NULL DEFAULT 0,
    pruned_at       timestamptz
);
INSERT INTO event_watermark DEFAULT VALUES;
ALTER TABLE event_watermark ENABLE ROW LEVEL SECURITY;

-- Delete the events older than p_before and advance the watermark; returns how many
-- were deleted. Only a prefix of the log goes (everything up to the newest event
-- older than p_before), so what stays is gap-free above the watermark. Called by the
-- scheduler with now() - events_retention_seconds.
CREATE FUNCTION mmc_prune_events(p_before timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_upto bigint;
    v_count integer;
BEGIN
    -- Serialise prunes: two at once would race on the watermark.
    PERFORM 1 FROM event_watermark FOR UPDATE;
    SELECT max(id) INTO v_upto FROM events WHERE created_at < p_before;
    IF v_upto IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE event_watermark
       SET pruned_through = greatest(pruned_through, v_upto), pruned_at = now();
    DELETE FROM events WHERE id <= v_upto;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- The seq a snapshot stands at: the newest event visible to the calling statement
-- (never below the watermark, so an emptied log does not send clients back to 0).
CREATE FUNCTION mmc_head_seq() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(coalesce((SELECT max(id) FROM events), 0),
                    (SELECT pruned_through FROM event_watermark))
$$;

-- The public waiting-room view of one clinic: numbers only, never a patient ID.
CREATE FUNCTION mmc_snapshot_clinic(p_clinic text, p_now timestamptz) RETURNS jsonb
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

-- The clinic console's view: the public one plus the waiting list and the entries
-- being served, patient IDs masked to their last four digits. No PIN (pin.current).
CREATE FUNCTION mmc_mask_patient(p_patient text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT repeat('*', greatest(length(p_patient) - 4, 0)) || right(p_patient, 4)
$$;

CREATE FUNCTION mmc_snapshot_staff(p_clinic text, p_now timestamptz) RETURNS jsonb
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

-- A patient's own view: today's route (or null) and their current entry with its
-- position (mmc_patient_status: status NONE when they wait nowhere).
CREATE FUNCTION mmc_snapshot_me(p_patient text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', jsonb_build_object(
        'patient_id', p_patient,
        'route', (SELECT mmc_route_view(r.id) FROM routes r
                   WHERE r.patient_id = p_patient AND r.day = mmc_local_day(p_now)),
        'entry', mmc_patient_status(p_patient, p_now)))
$$;

-- The admin dashboard at a seq.
CREATE FUNCTION mmc_snapshot_admin(p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', mmc_stats_dashboard(p_now))
$$;

-- Where everyone in one clinic stands, in one pass (the hub derives POSITION,
-- NEAR_TURN and YOUR_TURN from it): WAITING entries with ahead = their rank, and the
-- CALLED / IN_PROGRESS ones with ahead 0. The seq orders results against snapshots.
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
