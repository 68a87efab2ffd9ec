-- 001 core: the migration plan's ten tables with DOMAIN.md's fixes, plus what they need
-- (per-day counters, exam route templates, sessions, PIN attempts).
-- Valid on Postgres 15-18 and on Supabase; gen_random_uuid() is built in.

CREATE TABLE clinics (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code            text UNIQUE NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name            text NOT NULL,
    name_ar         text NOT NULL,
    floor           text NOT NULL,
    gender          text NOT NULL DEFAULT 'any' CHECK (gender IN ('any', 'male', 'female')),
    requires_pin    boolean NOT NULL DEFAULT false,
    call_interval   integer NOT NULL DEFAULT 300 CHECK (call_interval > 0),
    capacity        integer NOT NULL DEFAULT 1 CHECK (capacity > 0),
    is_active       boolean NOT NULL DEFAULT true,
    is_paused       boolean NOT NULL DEFAULT false,
    sort_order      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Staff and admin accounts share the migration plan's admins table: role + clinic.
CREATE TABLE admins (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username        text UNIQUE NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'staff')),
    clinic_code     text REFERENCES clinics(code) ON UPDATE CASCADE,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'staff') = (clinic_code IS NOT NULL))
);

CREATE TABLE patients (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id      text UNIQUE NOT NULL CHECK (patient_id ~ '^[0-9]{2,12}$'),
    gender          text NOT NULL CHECK (gender IN ('male', 'female')),
    login_time      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Opaque bearer tokens, stored only as their SHA-256.
CREATE TABLE sessions (
    token_hash      bytea PRIMARY KEY,
    role            text NOT NULL CHECK (role IN ('patient', 'staff', 'admin')),
    subject         text NOT NULL,
    clinic_code     text REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sessions_expires_at ON sessions (expires_at);

-- Numbers count from 1 per clinic per local day: one counter row, updated atomically
-- (the migration plan's MAX(queue_number)+1 handed out duplicates under concurrency).
CREATE TABLE queue_counters (
    clinic_code     text NOT NULL REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    day             date NOT NULL,
    last_number     integer NOT NULL,
    PRIMARY KEY (clinic_code, day)
);

CREATE TABLE route_templates (
    exam_type       text NOT NULL CHECK (exam_type ~ '^[a-z][a-z0-9_]{0,31}$'),
    gender          text NOT NULL CHECK (gender IN ('male', 'female')),
    stages          jsonb NOT NULL CHECK (jsonb_typeof(stages) = 'array'),
    PRIMARY KEY (exam_type, gender)
);

CREATE TABLE routes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    route_id            text UNIQUE NOT NULL,
    patient_id          text NOT NULL REFERENCES patients(patient_id),
    day                 date NOT NULL,
    exam_type           text NOT NULL,
    gender              text NOT NULL,
    stages              jsonb NOT NULL,
    clinics             jsonb NOT NULL,
    current_clinic      text REFERENCES clinics(code) ON UPDATE CASCADE,
    completed_clinics   jsonb NOT NULL DEFAULT '[]'::jsonb,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'completed', 'cancelled')),
    started_at          timestamptz NOT NULL,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (patient_id, day)
);
CREATE INDEX idx_routes_day_status ON routes (day, status);

CREATE TABLE queues (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clinic_code     text NOT NULL REFERENCES clinics(code) ON UPDATE CASCADE,
    patient_id      text NOT NULL REFERENCES patients(patient_id),
    route_id        uuid REFERENCES routes(id),
    day             date NOT NULL,
    queue_number    integer NOT NULL CHECK (queue_number > 0),
    status          text NOT NULL DEFAULT 'WAITING' CHECK (status IN
                    ('WAITING', 'CALLED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED', 'NO_SHOW')),
    sort_key        timestamptz NOT NULL,
    postpone_count  integer NOT NULL DEFAULT 0,
    eta_minutes     numeric,
    entered_at      timestamptz NOT NULL,
    called_at       timestamptz,
    started_at      timestamptz,
    completed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_code, day, queue_number)
);
-- At most one active entry per patient in the whole centre.
CREATE UNIQUE INDEX idx_queues_one_active ON queues (patient_id)
    WHERE status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
CREATE INDEX idx_queues_waiting ON queues (clinic_code, sort_key) WHERE status = 'WAITING';
CREATE INDEX idx_queues_clinic_day ON queues (clinic_code, day, status);
CREATE INDEX idx_queues_day ON queues (day);

-- One PIN per clinic per local day, distinct across clinics that day.
CREATE TABLE pins (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clinic_code     text NOT NULL REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    day             date NOT NULL,
    pin             text NOT NULL CHECK (pin ~ '^(0[1-9]|[1-9][0-9])$'),
    generated_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_code, day),
    UNIQUE (day, pin)
);

CREATE TABLE pin_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      text NOT NULL,
    clinic_code     text NOT NULL,
    attempted_at    timestamptz NOT NULL
);
CREATE INDEX idx_pin_attempts_lookup ON pin_attempts (patient_id, clinic_code, attempted_at);

-- The ordering log: id is the protocol's seq.
CREATE TABLE events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      text NOT NULL,
    clinic_code     text,
    patient_id      text,
    queue_number    integer,
    data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_events_clinic ON events (clinic_code, id);
CREATE INDEX idx_events_patient ON events (patient_id, id);
CREATE INDEX idx_events_created_at ON events (created_at);

CREATE TABLE settings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key             text UNIQUE NOT NULL,
    value           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reports (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_type     text NOT NULL CHECK (report_type IN ('daily', 'weekly', 'monthly', 'annual')),
    report_date     date NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_type, report_date)
);

CREATE TABLE rate_limits (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id       text NOT NULL,
    endpoint        text NOT NULL,
    request_count   integer NOT NULL DEFAULT 0,
    window_start    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, endpoint, window_start)
);
CREATE INDEX idx_rate_limits_window_start ON rate_limits (window_start);

-- updated_at bookkeeping.
CREATE FUNCTION mmc_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER touch_clinics BEFORE UPDATE ON clinics
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_admins BEFORE UPDATE ON admins
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_patients BEFORE UPDATE ON patients
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_routes BEFORE UPDATE ON routes
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_queues BEFORE UPDATE ON queues
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_settings BEFORE UPDATE ON settings
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();
CREATE TRIGGER touch_rate_limits BEFORE UPDATE ON rate_limits
    FOR EACH ROW EXECUTE FUNCTION mmc_touch_updated_at();

-- NOTIFY wake-ups: ids only, never a PIN; the events table is the log.
CREATE FUNCTION mmc_notify_queues() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mmc_queues', json_build_object(
        'id', NEW.id,
        'clinic', NEW.clinic_code,
        'status', NEW.status,
        'old_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER notify_queues AFTER INSERT OR UPDATE ON queues
    FOR EACH ROW EXECUTE FUNCTION mmc_notify_queues();

CREATE FUNCTION mmc_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mmc_events', json_build_object(
        'id', NEW.id,
        'type', NEW.event_type,
        'clinic', NEW.clinic_code,
        'patient', NEW.patient_id
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER notify_events AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION mmc_notify_events();

-- Row level security on, with no public policies: the migration plan's policies let anyone
-- holding the anon key read PINs and update queues. The server connects as owner.
ALTER TABLE admins ENABLE ROW LEVEL SECURITY;
ALTER TABLE patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE clinics ENABLE ROW LEVEL SECURITY;
ALTER TABLE queues ENABLE ROW LEVEL SECURITY;
ALTER TABLE pins ENABLE ROW LEVEL SECURITY;
ALTER TABLE routes ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE route_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE pin_attempts ENABLE ROW LEVEL SECURITY;
