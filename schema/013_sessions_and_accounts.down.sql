-- Undo 013: the old PIN submission and ID mask, no registrations, tickets or
-- revocation signals, and only the admin and staff roles.

DELETE FROM settings WHERE key IN ('patient_registration', 'pin_clinic_max_attempts',
                                   'login_address_limit');
CREATE OR REPLACE FUNCTION mmc_pin_submit(p_patient text, p_clinic text, p_pin text, p_now timestamptz)
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

CREATE OR REPLACE FUNCTION mmc_mask_patient(p_patient text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT repeat('*', greatest(length(p_patient) - 4, 0)) || right(p_patient, 4)
$$;

DROP FUNCTION mmc_pin_guessed(text, date, timestamptz);
DROP TABLE pin_forced_rotations;
DROP INDEX idx_pin_attempts_clinic;
DROP FUNCTION mmc_login_succeeded(text);
DROP FUNCTION mmc_login_failed(text, text, integer, timestamptz);
DROP FUNCTION mmc_login_gate(text, text, integer, integer, timestamptz);
DROP FUNCTION mmc_patient_login_code(text, text, bytea, timestamptz);
DROP FUNCTION mmc_reception_register(text, text, text, bytea, text, timestamptz);
DROP TABLE registrations;
DROP TABLE stream_tickets;
DROP TRIGGER account_changed ON admins;
DROP FUNCTION mmc_account_changed();
DROP TRIGGER sessions_revoked ON sessions;
DROP FUNCTION mmc_sessions_revoked();
DROP INDEX idx_sessions_subject;
DELETE FROM sessions WHERE role = 'reception';
DELETE FROM admins WHERE role = 'reception';
ALTER TABLE sessions DROP CONSTRAINT sessions_role_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_role_check
    CHECK (role IN ('patient', 'staff', 'admin'));
ALTER TABLE admins DROP CONSTRAINT admins_role_check;
ALTER TABLE admins ADD CONSTRAINT admins_role_check CHECK (role IN ('admin', 'staff'));
