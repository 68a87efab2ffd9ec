-- Undo 010: the events NOTIFY carries the ids only again (as 001 made it).
CREATE OR REPLACE FUNCTION mmc_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
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
