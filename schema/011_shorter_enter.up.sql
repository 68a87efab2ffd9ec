-- 011 shorter enter: a queue.enter asks the database less and holds the event-log lock
-- for less. Measured on the benchmark's stage, one connection, no contention: enter
-- took about 500 us of Postgres CPU against 250-300 for a call or a done.
--   * The patient's active entry is looked up once (at most one exists in the whole
--     centre); the earlier day's clean-up runs only when that entry is from one.
--   * The new entry's place comes from the count that allocated it instead of two
--     more counts: it is the last in line, so ahead = the WAITING entries before its
--     insert and total = ahead + 1.
--   * The ENTERED event is written last, after the answer is built, so the work done
--     while holding mmc_emit's lock (every command in the centre waits for it) is the
--     events insert and the commit, as in call and the staff actions.
--   * The waiting line's index carries the day and the line's whole order, so the
--     next to call is the index's first entry and the end of the line its last.

DROP INDEX idx_queues_waiting;
CREATE INDEX idx_queues_waiting ON queues (clinic_code, day, sort_key, queue_number)
    WHERE status = 'WAITING';

-- Where one entry stands, from counts the caller already has.
CREATE FUNCTION mmc_entry_view(p_entry queues, p_ahead integer, p_total integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_clinic clinics;
BEGIN
    SELECT * INTO v_clinic FROM clinics WHERE code = p_entry.clinic_code;
    RETURN jsonb_build_object(
        'clinic', p_entry.clinic_code,
        'clinic_name', v_clinic.name,
        'clinic_name_ar', v_clinic.name_ar,
        'floor', v_clinic.floor,
        'requires_pin', v_clinic.requires_pin,
        'number', p_entry.queue_number,
        'status', p_entry.status,
        'ahead', p_ahead,
        'position', p_ahead + 1,
        'total_waiting', p_total,
        'eta_minutes', CASE WHEN p_entry.status = 'WAITING'
                            THEN mmc_eta_minutes(p_entry.clinic_code, p_entry.day, p_ahead)
                            ELSE 0 END,
        'entered_at', p_entry.entered_at,
        'called_at', p_entry.called_at
    );
END;
$$;

-- Where one entry stands: ahead = WAITING entries ordered before it.
CREATE OR REPLACE FUNCTION mmc_entry_view(p_entry queues) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ahead integer := 0;
BEGIN
    IF p_entry.status = 'WAITING' THEN
        SELECT count(*)::integer INTO v_ahead FROM queues q
         WHERE q.clinic_code = p_entry.clinic_code AND q.day = p_entry.day
           AND q.status = 'WAITING'
           AND (q.sort_key, q.queue_number) < (p_entry.sort_key, p_entry.queue_number);
    END IF;
    RETURN mmc_entry_view(p_entry, v_ahead,
                          mmc_waiting_count(p_entry.clinic_code, p_entry.day));
END;
$$;

-- Allocate today's next number at a clinic and insert a WAITING entry at the end;
-- o_ahead is how many were waiting before it.
DROP FUNCTION mmc_enter_row(text, text, uuid, date, timestamptz);
CREATE FUNCTION mmc_enter_row(p_patient text, p_clinic text, p_route uuid, p_day date,
                              p_now timestamptz, OUT o_entry queues, OUT o_ahead integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_number integer;
    v_sort timestamptz;
BEGIN
    INSERT INTO queue_counters AS c (clinic_code, day, last_number)
    VALUES (p_clinic, p_day, 1)
    ON CONFLICT (clinic_code, day) DO UPDATE SET last_number = c.last_number + 1
    RETURNING last_number INTO v_number;

    -- The end of the line, even when the clock has not moved since the last entry.
    SELECT greatest(p_now, max(sort_key) + interval '1 microsecond'), count(*)::integer
      INTO v_sort, o_ahead
      FROM queues WHERE clinic_code = p_clinic AND day = p_day AND status = 'WAITING';
    v_sort := coalesce(v_sort, p_now);

    INSERT INTO queues (clinic_code, patient_id, route_id, day, queue_number, status,
                        sort_key, eta_minutes, entered_at)
    VALUES (p_clinic, p_patient, p_route, p_day, v_number, 'WAITING', v_sort,
            mmc_eta_minutes(p_clinic, p_day, o_ahead), p_now)
    RETURNING * INTO o_entry;
END;
$$;

CREATE OR REPLACE FUNCTION mmc_advance(p_route_id uuid, p_done text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_route routes;
    v_candidates jsonb;
    v_next text;
    v_new record;
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
    SELECT * INTO v_new
      FROM mmc_enter_row(v_route.patient_id, v_next, v_route.id, v_route.day, p_now);
    v_entry := v_new.o_entry;
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

CREATE OR REPLACE FUNCTION mmc_queue_enter(p_patient text, p_clinic text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_patient patients;
    v_clinic clinics;
    v_existing queues;
    v_route routes;
    v_new record;
    v_entry queues;
    v_events jsonb := '[]'::jsonb;
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
    -- The patient's one active entry, if any: an earlier day's is closed first;
    -- today's answers ALREADY_IN_QUEUE.
    SELECT * INTO v_existing FROM queues
     WHERE patient_id = p_patient AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
    IF FOUND AND v_existing.day < v_day THEN
        v_events := mmc_close_stale(p_patient, v_day, p_now);
    ELSIF FOUND THEN
        IF v_existing.clinic_code <> p_clinic THEN
            PERFORM mmc_raise('MQ409', 'already in the queue of another clinic');
        END IF;
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
    SELECT * INTO v_new FROM mmc_enter_row(p_patient, p_clinic, v_route.id, v_day, p_now);
    v_entry := v_new.o_entry;
    IF v_route.id IS NOT NULL THEN
        UPDATE routes SET current_clinic = p_clinic WHERE id = v_route.id;
    END IF;
    v_view := mmc_entry_view(v_entry, v_new.o_ahead, v_new.o_ahead + 1);
    PERFORM mmc_emit(v_events || mmc_event('ENTERED', p_clinic, p_patient,
                                           v_entry.queue_number,
                                           jsonb_build_object('number', v_entry.queue_number)));
    RETURN v_view || jsonb_build_object(
        'success', true, 'user', p_patient, 'display_number', v_view->'position',
        'entry_time', v_entry.entered_at);
END;
$$;
