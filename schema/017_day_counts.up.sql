-- 017 day counts: what a clinic's view and the admin dashboard tell of the whole day
-- (served, no-shows, mean wait, the last five called) read in constant time instead of
-- re-reading every entry of the day. By a busy afternoon (10,000 entries a clinic) a
-- console's snapshot read them all (43 ms), the dashboard every clinic's, and a
-- reconnect storm asks for one per clinic per process. A trigger keeps the counts.

CREATE TABLE clinic_day_counts (
    clinic_code     text NOT NULL,  -- no foreign key: a renamed clinic's entries move
                                    -- their counts themselves (the trigger), one by one
    day             date NOT NULL,
    completed       integer NOT NULL DEFAULT 0,
    no_show         integer NOT NULL DEFAULT 0,
    called          integer NOT NULL DEFAULT 0,  -- entries with a called_at
    wait_seconds    numeric NOT NULL DEFAULT 0,  -- their called_at - entered_at, summed
    PRIMARY KEY (clinic_code, day)
);
ALTER TABLE clinic_day_counts ENABLE ROW LEVEL SECURITY;

INSERT INTO clinic_day_counts (clinic_code, day, completed, no_show, called, wait_seconds)
SELECT clinic_code, day, count(*) FILTER (WHERE status = 'COMPLETED'),
       count(*) FILTER (WHERE status = 'NO_SHOW'), count(called_at),
       coalesce(sum(extract(epoch FROM called_at - entered_at)), 0)
  FROM queues GROUP BY clinic_code, day;

-- The last called of a clinic's day, newest first, without reading the rest.
CREATE INDEX idx_queues_called_recent ON queues (clinic_code, day, called_at DESC,
                                                 queue_number DESC)
    WHERE called_at IS NOT NULL;

-- Add to a clinic's day (negative numbers take away).
CREATE FUNCTION mmc_day_count_add(p_clinic text, p_day date, p_completed integer,
                                  p_no_show integer, p_called integer, p_wait numeric)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO clinic_day_counts AS s (clinic_code, day, completed, no_show, called,
                                        wait_seconds)
    VALUES (p_clinic, p_day, p_completed, p_no_show, p_called, p_wait)
    ON CONFLICT (clinic_code, day) DO UPDATE
       SET completed = s.completed + excluded.completed,
           no_show = s.no_show + excluded.no_show,
           called = s.called + excluded.called,
           wait_seconds = s.wait_seconds + excluded.wait_seconds
$$;

-- What an entry counts for in its clinic's day: one write per change that matters
-- (a call, a done, a no-show), none for the others (start, a pause).
CREATE FUNCTION mmc_count_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o_completed integer := 0; o_no_show integer := 0; o_called integer := 0;
    o_wait numeric := 0;
    n_completed integer := 0; n_no_show integer := 0; n_called integer := 0;
    n_wait numeric := 0;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        o_completed := (OLD.status = 'COMPLETED')::integer;
        o_no_show := (OLD.status = 'NO_SHOW')::integer;
        o_called := (OLD.called_at IS NOT NULL)::integer;
        o_wait := coalesce(extract(epoch FROM OLD.called_at - OLD.entered_at), 0);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        n_completed := (NEW.status = 'COMPLETED')::integer;
        n_no_show := (NEW.status = 'NO_SHOW')::integer;
        n_called := (NEW.called_at IS NOT NULL)::integer;
        n_wait := coalesce(extract(epoch FROM NEW.called_at - NEW.entered_at), 0);
    END IF;
    IF TG_OP = 'UPDATE' AND (OLD.clinic_code, OLD.day) = (NEW.clinic_code, NEW.day) THEN
        IF (o_completed, o_no_show, o_called, o_wait)
           IS DISTINCT FROM (n_completed, n_no_show, n_called, n_wait) THEN
            PERFORM mmc_day_count_add(NEW.clinic_code, NEW.day, n_completed - o_completed,
                                      n_no_show - o_no_show, n_called - o_called,
                                      n_wait - o_wait);
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND (o_completed, o_no_show, o_called) <> (0, 0, 0) THEN
        PERFORM mmc_day_count_add(OLD.clinic_code, OLD.day, -o_completed, -o_no_show,
                                  -o_called, -o_wait);
    END IF;
    IF TG_OP <> 'DELETE' AND (n_completed, n_no_show, n_called) <> (0, 0, 0) THEN
        PERFORM mmc_day_count_add(NEW.clinic_code, NEW.day, n_completed, n_no_show,
                                  n_called, n_wait);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER count_day AFTER INSERT OR DELETE OR UPDATE OF clinic_code, day, status,
    called_at, entered_at ON queues FOR EACH ROW EXECUTE FUNCTION mmc_count_day();

-- The views, reading the counts (each as it was otherwise). The day is compared as a
-- value, not joined from the CTE, so that it is an index condition: joined, the
-- planner read every entry the clinic ever had and filtered them by day.
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

CREATE OR REPLACE FUNCTION mmc_snapshot_staff(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day),
    pub AS (SELECT mmc_snapshot_clinic(p_clinic, p_now) AS s)
    SELECT jsonb_build_object('seq', pub.s->'seq', 'state', (pub.s->'state') || jsonb_build_object(
        'waiting_list', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'number', q.queue_number, 'patient', mmc_mask_patient(q.patient_id),
                'postpone_count', q.postpone_count, 'entered_at', q.entered_at)
                ORDER BY q.sort_key, q.queue_number)
              FROM queues q WHERE q.clinic_code = p_clinic AND q.day = (SELECT day FROM d)
                AND q.status = 'WAITING'), '[]'::jsonb),
        'serving_list', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'number', q.queue_number, 'patient', mmc_mask_patient(q.patient_id),
                'status', q.status, 'called_at', q.called_at, 'started_at', q.started_at)
                ORDER BY q.called_at, q.queue_number)
              FROM queues q WHERE q.clinic_code = p_clinic AND q.day = (SELECT day FROM d)
                AND q.status IN ('CALLED', 'IN_PROGRESS')), '[]'::jsonb),
        'served_today', mmc_served_today(p_clinic, (SELECT day FROM d))))
      FROM pub WHERE pub.s IS NOT NULL
$$;

-- stats.dashboard: per clinic waiting, serving, served today, mean wait; totals.
CREATE OR REPLACE FUNCTION mmc_stats_dashboard(p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH d AS (SELECT mmc_local_day(p_now) AS day),
    active AS (
        SELECT q.clinic_code,
               count(*) FILTER (WHERE q.status = 'WAITING') AS waiting,
               jsonb_agg(q.queue_number ORDER BY q.called_at)
                   FILTER (WHERE q.status IN ('CALLED', 'IN_PROGRESS')) AS serving
          FROM queues q
         WHERE q.day = (SELECT day FROM d) AND q.status IN ('WAITING', 'CALLED', 'IN_PROGRESS')
         GROUP BY q.clinic_code),
    per AS (
        SELECT c.code, c.name, c.name_ar, c.floor, c.is_paused, c.capacity, c.sort_order,
               coalesce(a.waiting, 0) AS waiting, coalesce(a.serving, '[]') AS serving,
               coalesce(n.completed, 0) AS served_today,
               coalesce(n.no_show, 0) AS no_show_today,
               round((n.wait_seconds / nullif(n.called, 0) / 60.0)::numeric, 1)
                   AS mean_wait_minutes
          FROM clinics c
          CROSS JOIN d
          LEFT JOIN active a ON a.clinic_code = c.code
          LEFT JOIN clinic_day_counts n ON n.clinic_code = c.code AND n.day = d.day
         WHERE c.is_active)
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
