-- 013 sessions and accounts: a revoked session reaches every server process at once
-- (mmc_control), disabled accounts and password resets end their sessions in the
-- database itself, the reception role and its registrations with one-time login codes,
-- single-use stream tickets for Server-Sent Events, login failures counted per account
-- and address, clinic-wide PIN guessing answered by a new PIN, shorter masked IDs.

ALTER TABLE admins DROP CONSTRAINT admins_role_check;
ALTER TABLE admins ADD CONSTRAINT admins_role_check
    CHECK (role IN ('admin', 'staff', 'reception'));
ALTER TABLE sessions DROP CONSTRAINT sessions_role_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_role_check
    CHECK (role IN ('patient', 'staff', 'admin', 'reception'));
CREATE INDEX idx_sessions_subject ON sessions (subject) WHERE role <> 'patient';

-- Every deleted session (logout, reset, disabled account, expiry) is announced to every
-- hub as the hex SHA-256 of its token, at most 100 a signal (NOTIFY payloads stay far
-- below 8000 bytes); each process closes the sockets and streams that hold it.
CREATE FUNCTION mmc_sessions_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT jsonb_agg(encode(token_hash, 'hex')) AS tokens
               FROM (SELECT token_hash, (row_number() OVER () - 1) / 100 AS chunk
                       FROM gone) g
              GROUP BY chunk
    LOOP
        PERFORM pg_notify('mmc_control', jsonb_build_object(
            'kind', 'session.revoked', 'tokens', c.tokens)::text);
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER sessions_revoked AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION mmc_sessions_revoked();

-- An account disabled, deleted or given a new password loses its sessions in the same
-- transaction, however the change was made (a command, the CLI, plain SQL).
CREATE FUNCTION mmc_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM sessions WHERE role <> 'patient' AND subject = OLD.username;
        RETURN OLD;
    END IF;
    IF NOT NEW.is_active OR NEW.password_hash IS DISTINCT FROM OLD.password_hash
       OR NEW.role IS DISTINCT FROM OLD.role
       OR NEW.clinic_code IS DISTINCT FROM OLD.clinic_code
       OR NEW.username IS DISTINCT FROM OLD.username THEN
        DELETE FROM sessions WHERE role <> 'patient' AND subject = OLD.username;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER account_changed AFTER UPDATE OR DELETE ON admins
    FOR EACH ROW EXECUTE FUNCTION mmc_account_changed();

-- Single-use tickets for events-stream: a URL carries one of these (valid seconds),
-- never a session token. A ticket dies with its session.
CREATE TABLE stream_tickets (
    ticket_hash     bytea PRIMARY KEY,
    session_hash    bytea NOT NULL REFERENCES sessions(token_hash) ON DELETE CASCADE,
    channel         text NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX idx_stream_tickets_expires_at ON stream_tickets (expires_at);
ALTER TABLE stream_tickets ENABLE ROW LEVEL SECURITY;

-- Reception's registrations: one per examinee per local day, with the hash of the
-- one-time code printed on the slip (used_at set by the login that spends it).
CREATE TABLE registrations (
    patient_id      text NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    day             date NOT NULL,
    code_hash       bytea NOT NULL,
    registered_by   text NOT NULL,
    registered_at   timestamptz NOT NULL,
    used_at         timestamptz,
    PRIMARY KEY (patient_id, day)
);
ALTER TABLE registrations ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION mmc_reception_register(p_patient text, p_gender text, p_exam text,
                                       p_code_hash bytea, p_by text, p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v patients;
    v_route jsonb;
BEGIN
    INSERT INTO patients (patient_id, gender) VALUES (p_patient, p_gender)
    ON CONFLICT (patient_id) DO NOTHING;
    SELECT * INTO v FROM patients WHERE patient_id = p_patient FOR UPDATE;
    IF v.gender <> p_gender THEN
        PERFORM mmc_raise('MQ409', 'this ID is registered with the other gender');
    END IF;
    v_route := mmc_route_create(p_patient, p_exam, p_now);
    INSERT INTO registrations (patient_id, day, code_hash, registered_by, registered_at)
    VALUES (p_patient, mmc_local_day(p_now), p_code_hash, p_by, p_now)
    ON CONFLICT (patient_id, day) DO UPDATE
        SET code_hash = excluded.code_hash, registered_by = excluded.registered_by,
            registered_at = excluded.registered_at, used_at = NULL;
    RETURN v_route;
END;
$$;

-- A login with the slip's code: the ID, the gender and an unspent code of today must
-- all match; which one did not is never said.
CREATE FUNCTION mmc_patient_login_code(p_patient text, p_gender text, p_code_hash bytea,
                                       p_now timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v patients;
BEGIN
    UPDATE registrations r SET used_at = p_now
      FROM patients p
     WHERE r.patient_id = p_patient AND r.day = mmc_local_day(p_now)
       AND r.used_at IS NULL AND r.code_hash = p_code_hash
       AND p.patient_id = r.patient_id AND p.gender = p_gender;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ401', 'ID, gender or code do not match');
    END IF;
    UPDATE patients SET login_time = p_now WHERE patient_id = p_patient RETURNING * INTO v;
    RETURN jsonb_build_object('patient_id', v.patient_id, 'gender', v.gender);
END;
$$;

-- Login failures: refused while the account at this address, or the address across
-- all accounts (the `login_address_limit` setting), is over its count in the window.
-- Only failures are counted (mmc_rate_hit); a success clears its account+address row.
CREATE FUNCTION mmc_login_gate(p_account text, p_address text, p_limit integer,
                               p_window_seconds integer, p_now timestamptz)
RETURNS integer LANGUAGE sql STABLE AS $$
    WITH w AS (SELECT date_bin(make_interval(secs => p_window_seconds), p_now,
                               timestamptz '2000-01-01 00:00:00+00') AS start),
    over AS (
        SELECT 1 FROM rate_limits, w
         WHERE window_start = w.start AND (
               (client_id = p_account AND endpoint = 'login.failed'
                AND request_count >= p_limit)
            OR (client_id = p_address AND endpoint = 'login.address'
                AND request_count >= coalesce(mmc_setting_int('login_address_limit'), 200))))
    SELECT CASE WHEN EXISTS (SELECT 1 FROM over)
                THEN greatest(1, ceil(extract(epoch FROM
                         (SELECT start FROM w) + make_interval(secs => p_window_seconds)
                         - p_now)))::integer
                ELSE 0 END
$$;

CREATE FUNCTION mmc_login_failed(p_account text, p_address text,
                                 p_window_seconds integer, p_now timestamptz)
RETURNS void LANGUAGE sql AS $$
    SELECT mmc_rate_hit(p_account, 'login.failed', 2147483647, p_window_seconds, p_now);
    SELECT mmc_rate_hit(p_address, 'login.address', 2147483647, p_window_seconds, p_now);
$$;

CREATE FUNCTION mmc_login_succeeded(p_account text) RETURNS void LANGUAGE sql AS $$
    DELETE FROM rate_limits WHERE client_id = p_account AND endpoint = 'login.failed';
$$;

-- PIN guessing across made-up identities: wrong PINs are also counted per clinic since
-- its PIN last changed; past `pin_clinic_max_attempts` inside the lockout window the
-- clinic gets a new PIN at once (PIN_ROTATED, reason guessing) and it is recorded.
CREATE TABLE pin_forced_rotations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    clinic_code     text NOT NULL REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    day             date NOT NULL,
    wrong_attempts  integer NOT NULL,
    rotated_at      timestamptz NOT NULL
);
CREATE INDEX idx_pin_forced_rotations_clinic ON pin_forced_rotations (clinic_code, rotated_at);
CREATE INDEX idx_pin_attempts_clinic ON pin_attempts (clinic_code, attempted_at);
ALTER TABLE pin_forced_rotations ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION mmc_pin_guessed(p_clinic text, p_day date, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_max integer := coalesce(mmc_setting_int('pin_clinic_max_attempts'), 20);
    v_window integer := coalesce(mmc_setting_int('pin_lockout_seconds'), 600);
    v_since timestamptz;
    v_count integer;
    v_pin text;
BEGIN
    SELECT greatest(p_now - make_interval(secs => v_window),
                    coalesce(max(rotated_at), '-infinity'))
      INTO v_since FROM pin_forced_rotations WHERE clinic_code = p_clinic;
    SELECT count(*)::integer INTO v_count FROM pin_attempts
     WHERE clinic_code = p_clinic AND attempted_at > v_since;
    IF v_count < v_max THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7171002);
    SELECT lpad(n::text, 2, '0') INTO v_pin
      FROM generate_series(1, 99) AS n
     WHERE lpad(n::text, 2, '0') NOT IN (SELECT pin FROM pins WHERE day = p_day)
     ORDER BY random()
     LIMIT 1;
    UPDATE pins SET pin = v_pin, generated_at = now()
     WHERE clinic_code = p_clinic AND day = p_day;
    INSERT INTO pin_forced_rotations (clinic_code, day, wrong_attempts, rotated_at)
    VALUES (p_clinic, p_day, v_count, p_now);
    PERFORM mmc_emit(jsonb_build_array(mmc_event('PIN_ROTATED', p_clinic, NULL, NULL,
        jsonb_build_object('day', p_day, 'reason', 'guessing'))));
END;
$$;

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
        PERFORM mmc_pin_guessed(p_clinic, v_pin_day, p_now);
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

-- Staff see at most the last four digits, and always at least four hidden: a short ID
-- shows fewer (an ID of eight shows four, of six two, of four none).
CREATE OR REPLACE FUNCTION mmc_mask_patient(p_patient text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT repeat('*', length(p_patient) - least(4, greatest(length(p_patient) - 4, 0)))
           || right(p_patient, least(4, greatest(length(p_patient) - 4, 0)))
$$;

INSERT INTO settings (key, value) VALUES
    ('patient_registration',     '"open"'),
    ('pin_clinic_max_attempts',  '20'),
    ('login_address_limit',      '200')
ON CONFLICT (key) DO NOTHING;
