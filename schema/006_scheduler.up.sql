-- 006 scheduler: the rules of the jobs nobody presses a button for (auto-call, call
-- timeouts, daily PINs, clean-up) and the committee's reports, built from queues and
-- routes rows. Every function takes p_now, the scheduler's clock.

-- When each clinic last called someone. queues.called_at cannot answer this: a skip
-- clears it, so a call that timed out would vanish and auto-call would fire at once.
CREATE TABLE clinic_calls (
    clinic_code     text PRIMARY KEY REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    last_called_at  timestamptz NOT NULL
);
ALTER TABLE clinic_calls ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION mmc_note_call() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO clinic_calls AS c (clinic_code, last_called_at)
    VALUES (NEW.clinic_code, NEW.called_at)
    ON CONFLICT (clinic_code) DO UPDATE
        SET last_called_at = greatest(c.last_called_at, excluded.last_called_at);
    RETURN NULL;
END;
$$;

-- Staff calls and auto-calls alike: "nobody called in the last call_interval seconds".
CREATE TRIGGER note_calls AFTER UPDATE OF status ON queues
    FOR EACH ROW WHEN (NEW.status = 'CALLED' AND OLD.status IS DISTINCT FROM 'CALLED'
                       AND NEW.called_at IS NOT NULL)
    EXECUTE FUNCTION mmc_note_call();

-- The clean-up job deletes by attempt time; the lookup index leads with the patient.
CREATE INDEX idx_pin_attempts_attempted_at ON pin_attempts (attempted_at);

-- Auto-call may call at this clinic now: capacity free (CALLED + IN_PROGRESS today
-- below capacity), nobody called in the last call_interval seconds, someone waiting.
CREATE FUNCTION mmc_auto_call_ready(p_clinic clinics, p_now timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
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

CREATE FUNCTION mmc_auto_call_enabled() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((mmc_setting('auto_call_enabled'))::boolean, true)
$$;

-- The clinics auto-call should call at now (read only; mmc_auto_call re-checks).
CREATE FUNCTION mmc_auto_call_due(p_now timestamptz) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.code FROM clinics c
     WHERE mmc_auto_call_enabled() AND c.is_active AND NOT c.is_paused
       AND mmc_auto_call_ready(c, p_now)
     ORDER BY c.sort_order, c.code
$$;

-- Call the next patient at one clinic if it is still due; NULL when it is not.
CREATE FUNCTION mmc_auto_call(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v clinics;
BEGIN
    -- NO KEY UPDATE serialises auto-calls of one clinic with each other and with a
    -- pause, without blocking the foreign-key checks of patients entering its queue.
    SELECT * INTO v FROM clinics WHERE code = p_clinic FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT v.is_active OR v.is_paused OR NOT mmc_auto_call_enabled()
       OR NOT mmc_auto_call_ready(v, p_now) THEN
        RETURN NULL;
    END IF;
    RETURN mmc_call_next(p_clinic, p_now);
EXCEPTION WHEN SQLSTATE 'MQE09' THEN
    -- The last waiting patient was being moved by someone else (SKIP LOCKED).
    RETURN NULL;
END;
$$;

-- Skip every CALLED entry of today not started within patient_max_wait_seconds (a
-- skip counts as a postpone; mmc_entry_action cancels at max_postpones).
CREATE FUNCTION mmc_time_out_calls(p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_wait integer := coalesce(mmc_setting_int('patient_max_wait_seconds'), 240);
    v_due jsonb;
    v_results jsonb := '[]'::jsonb;
    r jsonb;
BEGIN
    -- Lock every due entry before the first skip takes the event-log lock, so no row
    -- lock is awaited after it; SKIP LOCKED leaves one that staff are acting on.
    SELECT coalesce(jsonb_agg(jsonb_build_object('clinic', clinic_code, 'number', queue_number)
                              ORDER BY called_at, clinic_code, queue_number), '[]'::jsonb)
      INTO v_due
      FROM (SELECT q.clinic_code, q.queue_number, q.called_at
              FROM queues q JOIN clinics c ON c.code = q.clinic_code AND c.is_active
             WHERE q.day = mmc_local_day(p_now) AND q.status = 'CALLED'
               AND q.called_at <= p_now - make_interval(secs => v_wait)
               FOR UPDATE OF q SKIP LOCKED) due;
    FOR r IN SELECT e FROM jsonb_array_elements(v_due) AS t(e) LOOP
        v_results := v_results || mmc_entry_action(r->>'clinic', (r->>'number')::integer,
                                                   'skip', p_now);
    END LOOP;
    RETURN v_results;
END;
$$;

-- Draw the PINs of the current PIN day for clinics that lack one; returns how many
-- lacked one when looked at (0: nothing to do, no lock taken, nothing emitted).
CREATE FUNCTION mmc_rotate_due_pins(p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_pin_day(p_now);
    v_missing integer;
BEGIN
    SELECT count(*)::integer INTO v_missing FROM clinics c
     WHERE c.is_active AND c.requires_pin
       AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.clinic_code = c.code AND p.day = v_day);
    IF v_missing > 0 THEN
        PERFORM mmc_rotate_pins(v_day, NULL);
    END IF;
    RETURN v_missing;
END;
$$;

-- The day's end: entries still active on a past local day are cancelled (reason
-- day_closed) and that day's unfinished routes are cancelled, so a closed day's rows
-- never change after its report is stored and nobody is carried into tomorrow.
CREATE INDEX idx_queues_active_day ON queues (day)
    WHERE status IN ('WAITING', 'CALLED', 'IN_PROGRESS');

CREATE FUNCTION mmc_close_past_days(p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_today date := mmc_local_day(p_now);
    v_events jsonb := '[]'::jsonb;
    r queues;
BEGIN
    FOR r IN SELECT * FROM queues
              WHERE day < v_today AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS')
              ORDER BY day, clinic_code, queue_number
              FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE queues SET status = 'CANCELLED', completed_at = p_now WHERE id = r.id;
        v_events := v_events || mmc_event('CANCELLED', r.clinic_code, r.patient_id,
                                          r.queue_number, jsonb_build_object(
                                              'number', r.queue_number, 'reason', 'day_closed'));
    END LOOP;
    UPDATE routes SET status = 'cancelled', current_clinic = NULL
     WHERE day < v_today AND status = 'active';
    PERFORM mmc_emit(v_events);
    RETURN jsonb_array_length(v_events);
END;
$$;

-- Events older than events_retention_seconds; mmc_prune_events (004, the realtime
-- hub's) also advances the resume watermark.
CREATE FUNCTION mmc_prune_old_events(p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RETURN mmc_prune_events(
        p_now - make_interval(secs => coalesce(mmc_setting_int('events_retention_seconds'), 3600)));
END;
$$;

-- Expired sessions, PIN attempts that can no longer count toward a lockout, and
-- rate-limit windows older than p_rate_window (no window the server uses is longer).
CREATE FUNCTION mmc_clean_up(p_now timestamptz, p_rate_window interval DEFAULT interval '1 hour')
RETURNS jsonb LANGUAGE sql AS $$
    WITH s AS (DELETE FROM sessions WHERE expires_at <= p_now RETURNING 1),
         a AS (DELETE FROM pin_attempts
                WHERE attempted_at <= p_now - make_interval(
                          secs => coalesce(mmc_setting_int('pin_lockout_seconds'), 600))
                RETURNING 1),
         r AS (DELETE FROM rate_limits WHERE window_start < p_now - p_rate_window RETURNING 1)
    SELECT jsonb_build_object('sessions', (SELECT count(*) FROM s),
                              'pin_attempts', (SELECT count(*) FROM a),
                              'rate_limits', (SELECT count(*) FROM r))
$$;

-- Reports ----------------------------------------------------------------------------
-- Periods are local days [start, end): daily; weekly Saturday-Friday keyed by its
-- Saturday; monthly keyed by the 1st; annual by 1 January. Durations are seconds:
--   wait     = called_at - entered_at   (entries ever called; a skip re-dates the call)
--   service  = completed_at - called_at (COMPLETED entries)
--   door-to-door = routes.completed_at - routes.started_at (completed routes)
-- median and p90 are percentile_cont (linear interpolation between closest ranks).
-- served_per_hour = served x 3600 / open seconds, where a day's open seconds run from
-- its first call to its last completion among the COMPLETED entries counted.
-- SLA breach: wait > target_wait_seconds. ETA error (minutes) = wait / 60 - the
-- eta_minutes quoted at entry (positive: waited longer than told).

CREATE FUNCTION mmc_report_period(p_type text, p_date date,
                                  OUT period_start date, OUT period_end date)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE p_type
        WHEN 'daily' THEN
            period_start := p_date;
            period_end := p_date + 1;
        WHEN 'weekly' THEN
            -- isodow: Monday 1 .. Saturday 6, Sunday 7; the week starts on Saturday.
            period_start := p_date - (extract(isodow FROM p_date)::integer + 1) % 7;
            period_end := period_start + 7;
        WHEN 'monthly' THEN
            period_start := date_trunc('month', p_date::timestamp)::date;
            period_end := (period_start + interval '1 month')::date;
        WHEN 'annual' THEN
            period_start := date_trunc('year', p_date::timestamp)::date;
            period_end := (period_start + interval '1 year')::date;
        ELSE
            PERFORM mmc_raise('MQ400', 'report type must be daily, weekly, monthly or annual');
    END CASE;
END;
$$;

-- Queue figures over [p_start, p_end) for one clinic, or all when p_clinic is NULL.
CREATE FUNCTION mmc_report_queue_stats(p_start date, p_end date, p_clinic text,
                                       p_target integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH q AS (
        SELECT day, status, called_at, completed_at, eta_minutes::float8 AS eta,
               extract(epoch FROM called_at - entered_at)::float8 AS wait,
               CASE WHEN status = 'COMPLETED' AND called_at IS NOT NULL
                    THEN extract(epoch FROM completed_at - called_at)::float8 END AS service
          FROM queues
         WHERE day >= p_start AND day < p_end AND (p_clinic IS NULL OR clinic_code = p_clinic)),
    open_days AS (
        SELECT extract(epoch FROM max(completed_at) - min(called_at))::float8 AS seconds
          FROM q WHERE service IS NOT NULL GROUP BY day),
    figures AS (
        SELECT count(*) AS entered,
               count(*) FILTER (WHERE status = 'COMPLETED') AS served,
               count(*) FILTER (WHERE status = 'NO_SHOW') AS no_show,
               count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
               count(*) FILTER (WHERE status IN ('WAITING', 'CALLED', 'IN_PROGRESS')) AS unfinished,
               count(wait) AS called,
               avg(wait) AS wait_mean,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS wait_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY wait) AS wait_p90,
               max(wait) AS wait_max,
               avg(service) AS service_mean,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY service) AS service_p90,
               count(*) FILTER (WHERE wait > p_target) AS sla_breaches,
               count(*) FILTER (WHERE wait IS NOT NULL AND eta IS NOT NULL) AS eta_quoted,
               avg(abs(wait / 60 - eta)) AS eta_abs_error,
               avg(wait / 60 - eta) AS eta_error
          FROM q)
    SELECT jsonb_build_object(
        'entered', f.entered, 'served', f.served, 'no_show', f.no_show,
        'cancelled', f.cancelled, 'unfinished', f.unfinished, 'called', f.called,
        'wait_mean_seconds', f.wait_mean, 'wait_median_seconds', f.wait_median,
        'wait_p90_seconds', f.wait_p90, 'wait_max_seconds', f.wait_max,
        'service_mean_seconds', f.service_mean, 'service_p90_seconds', f.service_p90,
        'served_per_hour', (SELECT f.served * 3600 / nullif(sum(seconds), 0)
                              FROM open_days),
        'sla_breaches', f.sla_breaches, 'eta_quoted', f.eta_quoted,
        'eta_mean_abs_error_minutes', f.eta_abs_error,
        'eta_mean_error_minutes', f.eta_error)
      FROM figures f
$$;

-- Route figures over [p_start, p_end) for one exam type and gender, or all (NULLs).
CREATE FUNCTION mmc_report_route_stats(p_start date, p_end date, p_exam text,
                                       p_gender text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT status, CASE WHEN status = 'completed'
                            THEN extract(epoch FROM completed_at - started_at)::float8 END AS d2d
          FROM routes
         WHERE day >= p_start AND day < p_end
           AND (p_exam IS NULL OR exam_type = p_exam)
           AND (p_gender IS NULL OR gender = p_gender))
    SELECT jsonb_build_object(
        'started', count(*),
        'completed', count(*) FILTER (WHERE status = 'completed'),
        'door_to_door_mean_seconds', avg(d2d),
        'door_to_door_p90_seconds', percentile_cont(0.9) WITHIN GROUP (ORDER BY d2d))
      FROM r
$$;

-- The whole report of one period, from queues and routes rows (never events).
CREATE FUNCTION mmc_report_build(p_type text, p_date date, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tz text := coalesce(mmc_setting('timezone') #>> '{}', 'Asia/Qatar');
    v_target integer := coalesce(mmc_setting_int('target_wait_seconds'), 1800);
    v_start date;
    v_end date;
    v_clinics jsonb;
    v_routes jsonb;
    v_hours jsonb;
    v_days jsonb;
BEGIN
    SELECT period_start, period_end INTO v_start, v_end FROM mmc_report_period(p_type, p_date);
    SELECT coalesce(jsonb_agg(jsonb_build_object('clinic', c.code, 'name', c.name,
                                                 'name_ar', c.name_ar)
                              || mmc_report_queue_stats(v_start, v_end, c.code, v_target)
                              ORDER BY c.sort_order, c.code), '[]'::jsonb)
      INTO v_clinics
      FROM clinics c
     WHERE c.is_active OR EXISTS (SELECT 1 FROM queues q WHERE q.clinic_code = c.code
                                    AND q.day >= v_start AND q.day < v_end);
    SELECT coalesce(jsonb_agg(jsonb_build_object('exam_type', k.exam_type, 'gender', k.gender)
                              || mmc_report_route_stats(v_start, v_end, k.exam_type, k.gender)
                              ORDER BY k.exam_type, k.gender), '[]'::jsonb)
      INTO v_routes
      FROM (SELECT exam_type, gender FROM route_templates
            UNION SELECT exam_type, gender FROM routes
                   WHERE day >= v_start AND day < v_end) k;
    SELECT jsonb_agg(jsonb_build_object('hour', h, 'entered', coalesce(e.n, 0),
                                        'served', coalesce(s.n, 0)) ORDER BY h)
      INTO v_hours
      FROM generate_series(0, 23) AS h
      LEFT JOIN (SELECT extract(hour FROM entered_at AT TIME ZONE v_tz)::integer AS hour,
                        count(*) AS n
                   FROM queues WHERE day >= v_start AND day < v_end GROUP BY 1) e
             ON e.hour = h
      LEFT JOIN (SELECT extract(hour FROM completed_at AT TIME ZONE v_tz)::integer AS hour,
                        count(*) AS n
                   FROM queues WHERE day >= v_start AND day < v_end AND status = 'COMPLETED'
                  GROUP BY 1) s
             ON s.hour = h;
    SELECT jsonb_agg(jsonb_build_object('date', d, 'entered', coalesce(q.entered, 0),
                                        'served', coalesce(q.served, 0),
                                        'started', coalesce(r.started, 0)) ORDER BY d)
      INTO v_days
      FROM generate_series(0, v_end - v_start - 1) AS g(i)
      CROSS JOIN LATERAL (SELECT v_start + g.i AS d) dd
      LEFT JOIN (SELECT day, count(*) AS entered,
                        count(*) FILTER (WHERE status = 'COMPLETED') AS served
                   FROM queues WHERE day >= v_start AND day < v_end GROUP BY day) q
             ON q.day = d
      LEFT JOIN (SELECT day, count(*) AS started FROM routes
                  WHERE day >= v_start AND day < v_end GROUP BY day) r
             ON r.day = d;
    RETURN jsonb_build_object(
        'type', p_type, 'date', v_start, 'start', v_start, 'end', v_end - 1,
        'timezone', v_tz, 'target_wait_seconds', v_target,
        'closed', v_end <= mmc_local_day(p_now), 'generated_at', p_now,
        'total', mmc_report_queue_stats(v_start, v_end, NULL, v_target),
        'clinics', v_clinics,
        'routes', jsonb_build_object(
            'total', mmc_report_route_stats(v_start, v_end, NULL, NULL),
            'by_exam', v_routes),
        'hours', v_hours,
        'days', v_days,
        -- The most queue entries; the earliest wins a tie; none in an empty period.
        'busiest_hour', (SELECT jsonb_build_object('hour', x->'hour', 'entered', x->'entered')
                           FROM jsonb_array_elements(v_hours) AS t(x)
                          WHERE (x->>'entered')::integer > 0
                          ORDER BY (x->>'entered')::integer DESC, (x->>'hour')::integer
                          LIMIT 1),
        'busiest_day', (SELECT jsonb_build_object('date', x->'date', 'entered', x->'entered')
                          FROM jsonb_array_elements(v_days) AS t(x)
                         WHERE (x->>'entered')::integer > 0
                         ORDER BY (x->>'entered')::integer DESC, x->>'date'
                         LIMIT 1));
END;
$$;

-- report.get: a closed period's report as stored (built and stored on first ask);
-- the current period's built on demand and not stored.
CREATE FUNCTION mmc_report_get(p_type text, p_date date, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_today date := mmc_local_day(p_now);
    v_start date;
    v_end date;
    v_data jsonb;
BEGIN
    SELECT period_start, period_end INTO v_start, v_end
      FROM mmc_report_period(p_type, coalesce(p_date, v_today));
    IF v_start > v_today THEN
        PERFORM mmc_raise('MQ400', 'that period has not started');
    END IF;
    IF v_end > v_today THEN
        RETURN mmc_report_build(p_type, v_start, p_now);
    END IF;
    SELECT data INTO v_data FROM reports WHERE report_type = p_type AND report_date = v_start;
    IF FOUND THEN
        RETURN v_data;
    END IF;
    INSERT INTO reports (report_type, report_date, data)
    VALUES (p_type, v_start, mmc_report_build(p_type, v_start, p_now))
    ON CONFLICT (report_type, report_date) DO NOTHING;
    -- A concurrent builder may have stored it first: the stored row is the report.
    RETURN (SELECT data FROM reports WHERE report_type = p_type AND report_date = v_start);
END;
$$;

-- The reports job: store each of the last seven closed periods of every type that is
-- not stored yet, from the first day with data on. Returns how many it stored.
CREATE FUNCTION mmc_store_due_reports(p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_first date := least((SELECT min(day) FROM queues), (SELECT min(day) FROM routes));
    v_type text;
    v_start date;
    v_end date;
    v_count integer;
    v_stored integer := 0;
BEGIN
    IF v_first IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH v_type IN ARRAY ARRAY['daily', 'weekly', 'monthly', 'annual'] LOOP
        SELECT period_start INTO v_start FROM mmc_report_period(v_type, mmc_local_day(p_now));
        FOR i IN 1..7 LOOP
            SELECT period_start, period_end INTO v_start, v_end
              FROM mmc_report_period(v_type, v_start - 1);
            EXIT WHEN v_end <= v_first;
            IF NOT EXISTS (SELECT 1 FROM reports
                            WHERE report_type = v_type AND report_date = v_start) THEN
                INSERT INTO reports (report_type, report_date, data)
                VALUES (v_type, v_start, mmc_report_build(v_type, v_start, p_now))
                ON CONFLICT (report_type, report_date) DO NOTHING;
                GET DIAGNOSTICS v_count = ROW_COUNT;
                v_stored := v_stored + v_count;
            END IF;
        END LOOP;
    END LOOP;
    RETURN v_stored;
END;
$$;
