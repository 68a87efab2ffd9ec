-- 003 queue functions: the domain's rules, one function per operation, each run in
-- one transaction by server/commands.py. Errors are raised with SQLSTATE class MQ:
--   MQ400 bad_request  MQ401 unauthorized  MQ403 forbidden  MQ404 not_found
--   MQ409 conflict     MQE09 empty         MQL29 locked (DETAIL = retry_after seconds)
-- Every function takes p_now (the caller's clock) so local days are testable.
--
-- Lock order, to stay free of deadlocks: patient row -> queue row -> route row ->
-- counter row -> the event-log lock (always last, held until commit; see mmc_emit).

CREATE FUNCTION mmc_raise(p_code text, p_message text, p_detail text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message, DETAIL = p_detail;
END;
$$;

CREATE FUNCTION mmc_setting(p_key text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT value FROM settings WHERE key = p_key
$$;

CREATE FUNCTION mmc_setting_int(p_key text) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT (value #>> '{}')::integer FROM settings WHERE key = p_key
$$;

-- The local calendar day of an instant (Asia/Qatar unless the setting says otherwise).
CREATE FUNCTION mmc_local_day(p_now timestamptz) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (p_now AT TIME ZONE coalesce(mmc_setting('timezone') #>> '{}', 'Asia/Qatar'))::date
$$;

-- The day a PIN belongs to: PINs rotate at the local pin_reset_time (00:00 by
-- default, the migration plan's 21:00 UTC cron), so the PIN day is the local day shifted by it.
CREATE FUNCTION mmc_pin_day(p_now timestamptz) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT ((p_now AT TIME ZONE coalesce(mmc_setting('timezone') #>> '{}', 'Asia/Qatar'))
            - coalesce(mmc_setting('pin_reset_time') #>> '{}', '00:00')::interval)::date
$$;

-- Append events to the log. The transaction-scoped advisory lock makes event ids
-- commit in id order across the whole centre: a subscriber that has seen seq N has
-- seen every event below N on its channel, which is what resume relies on. It is the
-- last lock any command takes, and Postgres already serialises notifying commits.
CREATE FUNCTION mmc_emit(p_events jsonb) RETURNS void
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

CREATE FUNCTION mmc_event(p_type text, p_clinic text, p_patient text, p_number integer,
                          p_data jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('type', p_type, 'clinic', p_clinic, 'patient', p_patient,
                              'number', p_number, 'data', p_data)
$$;

CREATE FUNCTION mmc_clinic(p_code text) RETURNS clinics
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v clinics;
BEGIN
    SELECT * INTO v FROM clinics WHERE code = p_code AND is_active;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ404', 'unknown clinic');
    END IF;
    RETURN v;
END;
$$;

-- Mean service time (called -> completed) of today's completed entries, falling
-- back to the clinic's call_interval before anyone has been served.
CREATE FUNCTION mmc_mean_service_seconds(p_clinic text, p_day date) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT avg(extract(epoch FROM completed_at - called_at))
           FROM queues
          WHERE clinic_code = p_clinic AND day = p_day AND status = 'COMPLETED'
            AND called_at IS NOT NULL AND completed_at >= called_at),
        (SELECT call_interval FROM clinics WHERE code = p_clinic))::numeric
$$;

CREATE FUNCTION mmc_eta_minutes(p_clinic text, p_day date, p_ahead integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT ceil(p_ahead * mmc_mean_service_seconds(p_clinic, p_day)
                / (SELECT capacity FROM clinics WHERE code = p_clinic) / 60.0)::integer
$$;

CREATE FUNCTION mmc_waiting_count(p_clinic text, p_day date) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM queues
     WHERE clinic_code = p_clinic AND day = p_day AND status = 'WAITING'
$$;

-- Where one entry stands: ahead = WAITING entries ordered before it.
CREATE FUNCTION mmc_entry_view(p_entry queues) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_clinic clinics;
    v_ahead integer;
    v_total integer;
BEGIN
    SELECT * INTO v_clinic FROM clinics WHERE code = p_entry.clinic_code;
    v_total := mmc_waiting_count(p_entry.clinic_code, p_entry.day);
    IF p_entry.status = 'WAITING' THEN
        SELECT count(*)::integer INTO v_ahead FROM queues q
         WHERE q.clinic_code = p_entry.clinic_code AND q.day = p_entry.day
           AND q.status = 'WAITING'
           AND (q.sort_key, q.queue_number) < (p_entry.sort_key, p_entry.queue_number);
    ELSE
        v_ahead := 0;
    END IF;
    RETURN jsonb_build_object(
        'clinic', p_entry.clinic_code,
        'clinic_name', v_clinic.name,
        'clinic_name_ar', v_clinic.name_ar,
        'floor', v_clinic.floor,
        'requires_pin', v_clinic.requires_pin,
        'number', p_entry.queue_number,
        'status', p_entry.status,
        'ahead', v_ahead,
        'position', v_ahead + 1,
        'total_waiting', v_total,
        'eta_minutes', CASE WHEN p_entry.status = 'WAITING'
                            THEN mmc_eta_minutes(p_entry.clinic_code, p_entry.day, v_ahead)
                            ELSE 0 END,
        'entered_at', p_entry.entered_at,
        'called_at', p_entry.called_at
    );
END;
$$;

-- Allocate today's next number at a clinic and insert a WAITING entry at the end.
CREATE FUNCTION mmc_enter_row(p_patient text, p_clinic text, p_route uuid, p_day date,
                              p_now timestamptz) RETURNS queues
LANGUAGE plpgsql AS $$
DECLARE
    v_number integer;
    v_sort timestamptz;
    v_ahead integer;
    v_row queues;
BEGIN
    INSERT INTO queue_counters AS c (clinic_code, day, last_number)
    VALUES (p_clinic, p_day, 1)
    ON CONFLICT (clinic_code, day) DO UPDATE SET last_number = c.last_number + 1
    RETURNING last_number INTO v_number;

    -- The end of the line, even when the clock has not moved since the last entry.
    SELECT greatest(p_now, max(sort_key) + interval '1 microsecond'), count(*)::integer
      INTO v_sort, v_ahead
      FROM queues WHERE clinic_code = p_clinic AND day = p_day AND status = 'WAITING';
    v_sort := coalesce(v_sort, p_now);

    INSERT INTO queues (clinic_code, patient_id, route_id, day, queue_number, status,
                        sort_key, eta_minutes, entered_at)
    VALUES (p_clinic, p_patient, p_route, p_day, v_number, 'WAITING', v_sort,
            mmc_eta_minutes(p_clinic, p_day, v_ahead), p_now)
    RETURNING * INTO v_row;
    RETURN v_row;
END;
$$;

-- Entries left active on an earlier day are closed before a patient starts today.
CREATE FUNCTION mmc_close_stale(p_patient text, p_day date, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb := '[]'::jsonb;
    r queues;
BEGIN
    FOR r IN SELECT * FROM queues
              WHERE patient_id = p_patient AND day < p_day
                AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS')
              FOR UPDATE
    LOOP
        UPDATE queues SET status = 'CANCELLED', completed_at = p_now WHERE id = r.id;
        v_events := v_events || mmc_event('CANCELLED', r.clinic_code, p_patient,
                                          r.queue_number, jsonb_build_object(
                                              'number', r.queue_number, 'reason', 'day_closed'));
    END LOOP;
    RETURN v_events;
END;
$$;

-- path-choose: the clinic of the current stage, not yet done, with the lowest
-- expected wait (waiting x mean service / capacity), skipping paused clinics unless
-- every candidate is paused; ties by template order.
CREATE FUNCTION mmc_choose_clinic(p_candidates jsonb, p_day date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT c.code
      FROM jsonb_array_elements_text(p_candidates) WITH ORDINALITY AS t(code, ord)
      JOIN clinics c ON c.code = t.code
     ORDER BY c.is_paused,
              mmc_waiting_count(c.code, p_day) * mmc_mean_service_seconds(c.code, p_day)
                  / c.capacity,
              t.ord
     LIMIT 1
$$;

-- The clinics of the first stage that still has one not done (empty when finished).
CREATE FUNCTION mmc_stage_remaining(p_route routes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT jsonb_agg(code ORDER BY ord)
          FROM jsonb_array_elements_text(st.stage) WITH ORDINALITY AS c(code, ord)
         WHERE NOT p_route.completed_clinics ? c.code), '[]'::jsonb)
      FROM jsonb_array_elements(p_route.stages) WITH ORDINALITY AS st(stage, sord)
     WHERE EXISTS (SELECT 1 FROM jsonb_array_elements_text(st.stage) AS x(code)
                    WHERE NOT p_route.completed_clinics ? x.code)
     ORDER BY st.sord
     LIMIT 1
$$;

-- Mark p_done (if any) completed on the route and send the patient on: enter the
-- chosen clinic of the current stage, or complete the route. Returns the events.
CREATE FUNCTION mmc_advance(p_route_id uuid, p_done text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_route routes;
    v_candidates jsonb;
    v_next text;
    v_entry queues;
    v_clinic clinics;
BEGIN
    SELECT * INTO v_route FROM routes WHERE id = p_route_id FOR UPDATE;
    IF v_route.status <> 'active' THEN
        RETURN '[]'::jsonb;
    END IF;
    IF p_done IS NOT NULL AND NOT v_route.completed_clinics ? p_done THEN
        v_route.completed_clinics := v_route.completed_clinics || to_jsonb(p_done);
    END IF;
    v_candidates := mmc_stage_remaining(v_route);
    IF v_candidates IS NULL OR jsonb_array_length(v_candidates) = 0 THEN
        UPDATE routes SET completed_clinics = v_route.completed_clinics, current_clinic = NULL,
                          status = 'completed', completed_at = p_now
         WHERE id = v_route.id;
        RETURN jsonb_build_array(mmc_event('ROUTE_COMPLETED', NULL, v_route.patient_id, NULL,
                                           jsonb_build_object('route_id', v_route.route_id)));
    END IF;
    v_next := mmc_choose_clinic(v_candidates, v_route.day);
    v_entry := mmc_enter_row(v_route.patient_id, v_next, v_route.id, v_route.day, p_now);
    UPDATE routes SET completed_clinics = v_route.completed_clinics, current_clinic = v_next
     WHERE id = v_route.id;
    SELECT * INTO v_clinic FROM clinics WHERE code = v_next;
    RETURN jsonb_build_array(
        mmc_event('ENTERED', v_next, v_route.patient_id, v_entry.queue_number,
                  jsonb_build_object('number', v_entry.queue_number)),
        mmc_event('ROUTE_ADVANCED', v_next, v_route.patient_id, v_entry.queue_number,
                  jsonb_build_object('route_id', v_route.route_id, 'clinic', v_next,
                                     'floor', v_clinic.floor, 'number', v_entry.queue_number,
                                     'from', p_done)));
END;
$$;

-- The route as the patient sees it: stages with done / current / locked clinics.
CREATE FUNCTION mmc_route_view(p_route_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_route routes;
    v_entry queues;
    v_remaining jsonb;
BEGIN
    SELECT * INTO v_route FROM routes WHERE id = p_route_id;
    v_remaining := coalesce(mmc_stage_remaining(v_route), '[]'::jsonb);
    SELECT * INTO v_entry FROM queues
     WHERE route_id = v_route.id AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
    RETURN jsonb_build_object(
        'route_id', v_route.route_id,
        'exam_type', v_route.exam_type,
        'gender', v_route.gender,
        'day', v_route.day,
        'status', v_route.status,
        'current_clinic', v_route.current_clinic,
        'completed_clinics', v_route.completed_clinics,
        'stages', (
            SELECT jsonb_agg((
                SELECT jsonb_agg(jsonb_build_object(
                    'clinic', c.code, 'name', c.name, 'name_ar', c.name_ar, 'floor', c.floor,
                    'requires_pin', c.requires_pin,
                    'state', CASE WHEN v_route.completed_clinics ? c.code THEN 'done'
                                  WHEN c.code = v_route.current_clinic THEN 'current'
                                  WHEN v_remaining ? c.code THEN 'open'
                                  ELSE 'locked' END) ORDER BY x.ord)
                  FROM jsonb_array_elements_text(st.stage) WITH ORDINALITY AS x(code, ord)
                  JOIN clinics c ON c.code = x.code) ORDER BY st.sord)
              FROM jsonb_array_elements(v_route.stages) WITH ORDINALITY AS st(stage, sord)),
        'current', CASE WHEN v_entry.id IS NULL THEN NULL ELSE mmc_entry_view(v_entry) END,
        'started_at', v_route.started_at,
        'completed_at', v_route.completed_at
    );
END;
$$;

-- patient.login: an examinee by ID and gender; the first login fixes the gender.
CREATE FUNCTION mmc_patient_login(p_patient text, p_gender text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v patients;
BEGIN
    INSERT INTO patients (patient_id, gender, login_time) VALUES (p_patient, p_gender, p_now)
    ON CONFLICT (patient_id) DO UPDATE SET login_time = p_now
    RETURNING * INTO v;
    IF v.gender <> p_gender THEN
        PERFORM mmc_raise('MQ401', 'ID and gender do not match');
    END IF;
    RETURN jsonb_build_object('patient_id', v.patient_id, 'gender', v.gender);
END;
$$;

-- route.create: sticky per local day; enters the first clinic in the same transaction.
CREATE FUNCTION mmc_route_create(p_patient text, p_exam text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_patient patients;
    v_route routes;
    v_stages jsonb;
    v_events jsonb;
BEGIN
    SELECT * INTO v_patient FROM patients WHERE patient_id = p_patient FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ401', 'log in first');
    END IF;
    SELECT * INTO v_route FROM routes WHERE patient_id = p_patient AND day = v_day;
    IF FOUND THEN
        RETURN mmc_route_view(v_route.id) || jsonb_build_object('created', false);
    END IF;
    SELECT stages INTO v_stages FROM route_templates
     WHERE exam_type = p_exam AND gender = v_patient.gender;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ404', 'unknown exam type');
    END IF;
    v_events := mmc_close_stale(p_patient, v_day, p_now);
    IF EXISTS (SELECT 1 FROM queues WHERE patient_id = p_patient
                 AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS')) THEN
        PERFORM mmc_raise('MQ409', 'already waiting in a queue');
    END IF;
    INSERT INTO routes (route_id, patient_id, day, exam_type, gender, stages, clinics, started_at)
    VALUES ('R' || to_char(v_day, 'YYYYMMDD') || '-'
                || substr(replace(gen_random_uuid()::text, '-', ''), 1, 10),
            p_patient, v_day, p_exam, v_patient.gender, v_stages,
            (SELECT jsonb_agg(c ORDER BY s.ord, c.ord)
               FROM jsonb_array_elements(v_stages) WITH ORDINALITY AS s(stage, ord),
                    jsonb_array_elements(s.stage) WITH ORDINALITY AS c(c, ord)),
            p_now)
    RETURNING * INTO v_route;
    v_events := v_events || mmc_advance(v_route.id, NULL, p_now);
    PERFORM mmc_emit(v_events);
    RETURN mmc_route_view(v_route.id) || jsonb_build_object('created', true);
END;
$$;

CREATE FUNCTION mmc_route_get(p_patient text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT id INTO v_id FROM routes WHERE patient_id = p_patient AND day = mmc_local_day(p_now);
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ404', 'no route today');
    END IF;
    RETURN mmc_route_view(v_id);
END;
$$;

-- queue.enter (patient): as the migration plan's enter_queue, with the fixes of DOMAIN.md.
CREATE FUNCTION mmc_queue_enter(p_patient text, p_clinic text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_patient patients;
    v_clinic clinics;
    v_existing queues;
    v_route routes;
    v_entry queues;
    v_events jsonb;
    v_view jsonb;
BEGIN
    SELECT * INTO v_patient FROM patients WHERE patient_id = p_patient FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ401', 'log in first');
    END IF;
    v_clinic := mmc_clinic(p_clinic);
    IF v_clinic.gender <> 'any' AND v_clinic.gender <> v_patient.gender THEN
        PERFORM mmc_raise('MQ403', 'this clinic does not serve your gender');
    END IF;
    v_events := mmc_close_stale(p_patient, v_day, p_now);
    SELECT * INTO v_existing FROM queues
     WHERE patient_id = p_patient AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
    IF FOUND THEN
        IF v_existing.clinic_code <> p_clinic THEN
            PERFORM mmc_raise('MQ409', 'already in the queue of another clinic');
        END IF;
        PERFORM mmc_emit(v_events);
        v_view := mmc_entry_view(v_existing);
        RETURN v_view || jsonb_build_object(
            'success', true, 'user', p_patient, 'status', 'ALREADY_IN_QUEUE',
            'entry_status', v_existing.status, 'display_number', v_view->'position',
            'entry_time', v_existing.entered_at, 'message', 'Already in queue');
    END IF;
    SELECT * INTO v_route FROM routes
     WHERE patient_id = p_patient AND day = v_day FOR UPDATE;
    IF FOUND THEN
        IF v_route.status <> 'active' THEN
            PERFORM mmc_raise('MQ409', 'your route for today is finished');
        END IF;
        IF NOT coalesce(mmc_stage_remaining(v_route), '[]'::jsonb) ? p_clinic THEN
            PERFORM mmc_raise('MQ409', 'this clinic is not open on your route yet');
        END IF;
    END IF;
    v_entry := mmc_enter_row(p_patient, p_clinic, v_route.id, v_day, p_now);
    IF v_route.id IS NOT NULL THEN
        UPDATE routes SET current_clinic = p_clinic WHERE id = v_route.id;
    END IF;
    v_events := v_events || mmc_event('ENTERED', p_clinic, p_patient, v_entry.queue_number,
                                      jsonb_build_object('number', v_entry.queue_number));
    PERFORM mmc_emit(v_events);
    v_view := mmc_entry_view(v_entry);
    RETURN v_view || jsonb_build_object(
        'success', true, 'user', p_patient, 'display_number', v_view->'position',
        'entry_time', v_entry.entered_at);
END;
$$;

-- queue.status for a patient: their active entry today, or none.
CREATE FUNCTION mmc_patient_status(p_patient text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v queues;
BEGIN
    SELECT * INTO v FROM queues
     WHERE patient_id = p_patient AND day = mmc_local_day(p_now)
       AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 'NONE', 'number', NULL, 'position', NULL,
                                  'ahead', NULL, 'total_waiting', NULL, 'eta_minutes', NULL);
    END IF;
    RETURN mmc_entry_view(v);
END;
$$;

-- queue.status for a clinic: numbers only.
CREATE FUNCTION mmc_clinic_status(p_clinic text, p_now timestamptz) RETURNS jsonb
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

-- queue.call: the first WAITING by sort_key; SKIP LOCKED so two staff pressing at once
-- call two different people, never one twice. Capacity never refuses a staff call.
CREATE FUNCTION mmc_call_next(p_clinic text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v queues;
BEGIN
    PERFORM mmc_clinic(p_clinic);
    SELECT * INTO v FROM queues
     WHERE clinic_code = p_clinic AND day = v_day AND status = 'WAITING'
     ORDER BY sort_key, queue_number
     LIMIT 1
     FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQE09', 'nobody is waiting');
    END IF;
    UPDATE queues SET status = 'CALLED', called_at = p_now WHERE id = v.id RETURNING * INTO v;
    PERFORM mmc_emit(jsonb_build_array(
        mmc_event('CALLED', p_clinic, v.patient_id, v.queue_number,
                  jsonb_build_object('number', v.queue_number))));
    RETURN jsonb_build_object('called', jsonb_build_object(
        'number', v.queue_number, 'status', v.status, 'clinic', p_clinic));
END;
$$;

-- Staff actions on one entry: recall, start, done, skip, no_show. Without a number
-- the action takes the entry it would naturally apply to.
CREATE FUNCTION mmc_entry_action(p_clinic text, p_number integer, p_action text,
                                 p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_allowed text[];
    v queues;
    v_events jsonb := '[]'::jsonb;
    v_max integer;
    v_sort timestamptz;
BEGIN
    PERFORM mmc_clinic(p_clinic);
    v_allowed := CASE p_action
        WHEN 'recall'  THEN ARRAY['CALLED']
        WHEN 'start'   THEN ARRAY['CALLED']
        WHEN 'done'    THEN ARRAY['CALLED', 'IN_PROGRESS']
        WHEN 'skip'    THEN ARRAY['CALLED', 'WAITING']
        WHEN 'no_show' THEN ARRAY['CALLED']
    END;
    IF v_allowed IS NULL THEN
        PERFORM mmc_raise('MQ400', 'unknown action');
    END IF;
    IF p_number IS NOT NULL THEN
        SELECT * INTO v FROM queues
         WHERE clinic_code = p_clinic AND day = v_day AND queue_number = p_number FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM mmc_raise('MQ404', 'no entry with that number today');
        END IF;
        IF NOT v.status = ANY (v_allowed) THEN
            PERFORM mmc_raise('MQ409', format('number %s is %s', v.queue_number, v.status));
        END IF;
    ELSE
        SELECT * INTO v FROM queues
         WHERE clinic_code = p_clinic AND day = v_day AND status = ANY (v_allowed)
           AND status <> 'WAITING'
         ORDER BY CASE WHEN p_action = 'recall' THEN -extract(epoch FROM called_at) END,
                  CASE WHEN p_action = 'done' AND status = 'IN_PROGRESS' THEN 0 ELSE 1 END,
                  called_at, queue_number
         LIMIT 1
         FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM mmc_raise('MQ404', 'nobody is called at this clinic');
        END IF;
    END IF;

    IF p_action = 'recall' THEN
        v_events := jsonb_build_array(mmc_event('RECALLED', p_clinic, v.patient_id,
                                                v.queue_number,
                                                jsonb_build_object('number', v.queue_number)));
    ELSIF p_action = 'start' THEN
        UPDATE queues SET status = 'IN_PROGRESS', started_at = p_now WHERE id = v.id
        RETURNING * INTO v;
        v_events := jsonb_build_array(mmc_event('STARTED', p_clinic, v.patient_id,
                                                v.queue_number,
                                                jsonb_build_object('number', v.queue_number)));
    ELSIF p_action = 'done' THEN
        UPDATE queues SET status = 'COMPLETED', completed_at = p_now WHERE id = v.id
        RETURNING * INTO v;
        v_events := jsonb_build_array(mmc_event('COMPLETED', p_clinic, v.patient_id,
                                                v.queue_number,
                                                jsonb_build_object('number', v.queue_number)));
        IF v.route_id IS NOT NULL THEN
            v_events := v_events || mmc_advance(v.route_id, p_clinic, p_now);
        END IF;
    ELSIF p_action = 'skip' THEN
        v_max := coalesce(mmc_setting_int('max_postpones'), 3);
        IF v.postpone_count + 1 >= v_max THEN
            UPDATE queues SET status = 'CANCELLED', postpone_count = postpone_count + 1,
                              completed_at = p_now
             WHERE id = v.id RETURNING * INTO v;
            v_events := jsonb_build_array(mmc_event('CANCELLED', p_clinic, v.patient_id,
                                                    v.queue_number, jsonb_build_object(
                                                        'number', v.queue_number,
                                                        'reason', 'max_postpones')));
        ELSE
            SELECT greatest(p_now, max(sort_key) + interval '1 microsecond') INTO v_sort
              FROM queues WHERE clinic_code = p_clinic AND day = v_day AND status = 'WAITING';
            UPDATE queues SET status = 'WAITING', postpone_count = postpone_count + 1,
                              sort_key = coalesce(v_sort, p_now), called_at = NULL
             WHERE id = v.id RETURNING * INTO v;
            v_events := jsonb_build_array(mmc_event('SKIPPED', p_clinic, v.patient_id,
                                                    v.queue_number, jsonb_build_object(
                                                        'number', v.queue_number,
                                                        'postpone_count', v.postpone_count)));
        END IF;
    ELSIF p_action = 'no_show' THEN
        UPDATE queues SET status = 'NO_SHOW', completed_at = p_now WHERE id = v.id
        RETURNING * INTO v;
        v_events := jsonb_build_array(mmc_event('NO_SHOW', p_clinic, v.patient_id,
                                                v.queue_number,
                                                jsonb_build_object('number', v.queue_number)));
    END IF;
    PERFORM mmc_emit(v_events);
    RETURN jsonb_build_object('number', v.queue_number, 'status', v.status,
                              'clinic', p_clinic, 'postpone_count', v.postpone_count);
END;
$$;

-- Today's PINs: one per PIN clinic, two digits 01-99, distinct across clinics.
-- Idempotent per day: clinics that already have today's PIN keep it.
CREATE FUNCTION mmc_rotate_pins(p_day date, p_clinic text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_pin text;
    v_events jsonb := '[]'::jsonb;
BEGIN
    -- Serialise rotations so two processes never race for the same free PIN.
    PERFORM pg_advisory_xact_lock(7171002);
    FOR c IN SELECT code FROM clinics
              WHERE is_active AND requires_pin AND (p_clinic IS NULL OR code = p_clinic)
                AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.clinic_code = clinics.code
                                  AND p.day = p_day)
              ORDER BY sort_order, code
    LOOP
        SELECT lpad(n::text, 2, '0') INTO v_pin
          FROM generate_series(1, 99) AS n
         WHERE lpad(n::text, 2, '0') NOT IN (SELECT pin FROM pins WHERE day = p_day)
         ORDER BY random()
         LIMIT 1;
        INSERT INTO pins (clinic_code, day, pin) VALUES (c.code, p_day, v_pin);
        v_events := v_events || mmc_event('PIN_ROTATED', c.code, NULL, NULL,
                                          jsonb_build_object('day', p_day));
    END LOOP;
    PERFORM mmc_emit(v_events);
    RETURN coalesce((SELECT jsonb_object_agg(clinic_code, pin) FROM pins
                      WHERE day = p_day AND (p_clinic IS NULL OR clinic_code = p_clinic)),
                    '{}'::jsonb);
END;
$$;

-- pin.submit: only while CALLED or IN_PROGRESS at that clinic; wrong tries are
-- recorded (and committed) and count toward the lockout across all processes.
-- Returns {"error": "wrong_pin"} rather than raising, so the try is kept.
CREATE FUNCTION mmc_pin_submit(p_patient text, p_clinic text, p_pin text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_pin_day date := mmc_pin_day(p_now);
    v_clinic clinics := mmc_clinic(p_clinic);
    v queues;
    v_max integer := coalesce(mmc_setting_int('pin_max_attempts'), 5);
    v_window integer := coalesce(mmc_setting_int('pin_lockout_seconds'), 600);
    v_oldest timestamptz;
    v_count integer;
    v_events jsonb;
BEGIN
    IF NOT v_clinic.requires_pin THEN
        PERFORM mmc_raise('MQ400', 'this clinic does not use a PIN');
    END IF;
    SELECT * INTO v FROM queues
     WHERE patient_id = p_patient AND clinic_code = p_clinic AND day = v_day
       AND status IN ('CALLED', 'IN_PROGRESS')
     FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ409', 'you have not been called at this clinic');
    END IF;
    SELECT count(*)::integer, min(attempted_at) INTO v_count, v_oldest FROM (
        SELECT attempted_at FROM pin_attempts
         WHERE patient_id = p_patient AND clinic_code = p_clinic
           AND attempted_at > p_now - make_interval(secs => v_window)
         ORDER BY attempted_at DESC LIMIT v_max) recent;
    IF v_count >= v_max THEN
        PERFORM mmc_raise('MQL29', 'too many wrong PINs; try again later',
            ceil(extract(epoch FROM v_oldest + make_interval(secs => v_window) - p_now))::text);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pins WHERE clinic_code = p_clinic AND day = v_pin_day) THEN
        PERFORM mmc_rotate_pins(v_pin_day, p_clinic);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pins WHERE clinic_code = p_clinic AND day = v_pin_day
                     AND pin = p_pin) THEN
        INSERT INTO pin_attempts (patient_id, clinic_code, attempted_at)
        VALUES (p_patient, p_clinic, p_now);
        RETURN jsonb_build_object('error', 'wrong_pin');
    END IF;
    UPDATE queues SET status = 'COMPLETED', completed_at = p_now WHERE id = v.id;
    v_events := jsonb_build_array(mmc_event('COMPLETED', p_clinic, p_patient, v.queue_number,
                                            jsonb_build_object('number', v.queue_number,
                                                               'by', 'pin')));
    IF v.route_id IS NOT NULL THEN
        v_events := v_events || mmc_advance(v.route_id, p_clinic, p_now);
    END IF;
    PERFORM mmc_emit(v_events);
    IF v.route_id IS NULL THEN
        RETURN jsonb_build_object('completed', p_clinic, 'route_completed', false,
                                  'next', NULL);
    END IF;
    RETURN jsonb_build_object(
        'completed', p_clinic,
        'route_completed', (SELECT status = 'completed' FROM routes WHERE id = v.route_id),
        'next', (SELECT mmc_entry_view(q) FROM queues q WHERE q.route_id = v.route_id
                   AND q.status IN ('WAITING', 'CALLED', 'IN_PROGRESS')));
END;
$$;

CREATE FUNCTION mmc_clinic_view(p_clinic clinics) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('code', p_clinic.code, 'name', p_clinic.name,
        'name_ar', p_clinic.name_ar, 'floor', p_clinic.floor, 'gender', p_clinic.gender,
        'requires_pin', p_clinic.requires_pin, 'call_interval', p_clinic.call_interval,
        'capacity', p_clinic.capacity, 'is_active', p_clinic.is_active,
        'is_paused', p_clinic.is_paused)
$$;

CREATE FUNCTION mmc_set_paused(p_clinic text, p_paused boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v clinics;
BEGIN
    SELECT * INTO v FROM clinics WHERE code = p_clinic AND is_active FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ404', 'unknown clinic');
    END IF;
    IF v.is_paused IS DISTINCT FROM p_paused THEN
        UPDATE clinics SET is_paused = p_paused WHERE code = p_clinic RETURNING * INTO v;
        PERFORM mmc_emit(jsonb_build_array(mmc_event(
            CASE WHEN p_paused THEN 'CLINIC_PAUSED' ELSE 'CLINIC_RESUMED' END,
            p_clinic, NULL, NULL, jsonb_build_object('is_paused', p_paused))));
    END IF;
    RETURN mmc_clinic_view(v);
END;
$$;

CREATE FUNCTION mmc_settings_all() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value ORDER BY key), '{}'::jsonb) FROM settings
$$;

CREATE FUNCTION mmc_settings_set(p_key text, p_value jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO settings (key, value) VALUES (p_key, p_value)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    PERFORM mmc_emit(jsonb_build_array(mmc_event('SETTINGS_CHANGED', NULL, NULL, NULL,
        jsonb_build_object('key', p_key, 'value', p_value))));
    RETURN mmc_settings_all();
END;
$$;

-- stats.dashboard: per clinic waiting, serving, served today, mean wait; totals.
CREATE FUNCTION mmc_stats_dashboard(p_now timestamptz) RETURNS jsonb
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
