-- 010 events in NOTIFY: the events NOTIFY carries the whole event (its number, data and
-- commit time as microseconds since the epoch), so the hub fans it out as it arrives
-- instead of reading the log for every wake-up. The log stays the truth: the hub reads
-- it whenever the next id is not the one it expects (a rolled-back id, a reconnect),
-- and when an event is too large for NOTIFY (8,000 bytes), whose payload then carries
-- only the ids, as before. Never a PIN: events hold none.
CREATE OR REPLACE FUNCTION mmc_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_payload text := json_build_object(
        'id', NEW.id,
        'type', NEW.event_type,
        'clinic', NEW.clinic_code,
        'patient', NEW.patient_id,
        'number', NEW.queue_number,
        'data', NEW.data,
        'at_us', (extract(epoch FROM NEW.created_at) * 1000000)::bigint
    )::text;
BEGIN
    IF octet_length(v_payload) >= 8000 THEN
        v_payload := json_build_object(
            'id', NEW.id,
            'type', NEW.event_type,
            'clinic', NEW.clinic_code,
            'patient', NEW.patient_id
        )::text;
    END IF;
    PERFORM pg_notify('mmc_events', v_payload);
    RETURN NULL;
END;
$$;
