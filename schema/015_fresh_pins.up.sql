-- 015 fresh PINs: an admin who believes a PIN has leaked draws a new one at once
-- (`pin.rotate` with `fresh`), for one clinic or every PIN clinic. The daily rotation
-- and `pin.rotate` without `fresh` stay idempotent (mmc_rotate_pins). Each new PIN is
-- distinct from every PIN of the day and from the one it replaces; PIN_ROTATED says
-- why, on the clinic's staff channel.

CREATE FUNCTION mmc_fresh_pins(p_day date, p_clinic text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_pin text;
    v_events jsonb := '[]'::jsonb;
BEGIN
    -- The PIN lock before the event-log lock that mmc_rotate_pins may take (lock order).
    PERFORM pg_advisory_xact_lock(7171002);
    PERFORM mmc_rotate_pins(p_day, p_clinic);  -- a clinic without today's PIN gets one
    FOR c IN SELECT p.clinic_code, p.pin FROM pins p JOIN clinics k ON k.code = p.clinic_code
              WHERE p.day = p_day AND k.is_active AND k.requires_pin
                AND (p_clinic IS NULL OR p.clinic_code = p_clinic)
              ORDER BY k.sort_order, k.code
    LOOP
        SELECT lpad(n::text, 2, '0') INTO v_pin
          FROM generate_series(1, 99) AS n
         WHERE lpad(n::text, 2, '0') NOT IN (SELECT pin FROM pins WHERE day = p_day)
         ORDER BY random()
         LIMIT 1;
        IF v_pin IS NULL THEN
            PERFORM mmc_raise('MQ409', 'no free PIN is left today');
        END IF;
        UPDATE pins SET pin = v_pin, generated_at = now()
         WHERE clinic_code = c.clinic_code AND day = p_day;
        v_events := v_events || mmc_event('PIN_ROTATED', c.clinic_code, NULL, NULL,
                                          jsonb_build_object('day', p_day, 'reason', 'admin'));
    END LOOP;
    PERFORM mmc_emit(v_events);
    RETURN coalesce((SELECT jsonb_object_agg(clinic_code, pin) FROM pins
                      WHERE day = p_day AND (p_clinic IS NULL OR clinic_code = p_clinic)),
                    '{}'::jsonb);
END;
$$;
