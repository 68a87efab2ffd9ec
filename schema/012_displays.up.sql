-- 012 display presence: every waiting-room display says who it is (name, clinics) and,
-- every 15 s, whether its sound is unlocked, which voice it uses and the last call it
-- announced. One row per display, shared by every server process, so the admin sees a
-- silent or muted screen whichever process it is connected to.

CREATE TABLE displays (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    clinics         jsonb NOT NULL CHECK (jsonb_typeof(clinics) = 'array'),
    sound           boolean NOT NULL DEFAULT false,
    voice           text NOT NULL DEFAULT 'none' CHECK (voice IN ('server', 'browser', 'none')),
    last_announced  bigint,
    connected       boolean NOT NULL DEFAULT true,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL
);
CREATE INDEX idx_displays_last_seen ON displays (last_seen);
ALTER TABLE displays ENABLE ROW LEVEL SECURITY;

-- A hello: update the display's row (when it names one that still exists) or make a
-- new one. Rows unseen for a day are forgotten, and the table never holds more than
-- p_max rows: the longest unseen go first.
CREATE FUNCTION mmc_display_hello(p_id uuid, p_name text, p_clinics jsonb, p_sound boolean,
                                  p_voice text, p_last_announced bigint, p_now timestamptz,
                                  p_max integer)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_unknown text;
BEGIN
    SELECT c INTO v_unknown FROM jsonb_array_elements_text(p_clinics) AS c
     WHERE NOT EXISTS (SELECT 1 FROM clinics WHERE code = c AND is_active) LIMIT 1;
    IF v_unknown IS NOT NULL THEN
        PERFORM mmc_raise('MQ404', 'unknown clinic');
    END IF;
    UPDATE displays SET name = p_name, clinics = p_clinics, sound = p_sound, voice = p_voice,
                        last_announced = p_last_announced, connected = true, last_seen = p_now
     WHERE id = p_id
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        DELETE FROM displays WHERE last_seen < p_now - interval '1 day';
        DELETE FROM displays WHERE id IN (
            SELECT id FROM displays ORDER BY last_seen DESC OFFSET greatest(p_max - 1, 0));
        INSERT INTO displays (name, clinics, sound, voice, last_announced, first_seen, last_seen)
        VALUES (p_name, p_clinics, p_sound, p_voice, p_last_announced, p_now, p_now)
        RETURNING id INTO v_id;
    END IF;
    RETURN v_id;
END;
$$;

-- Every display, newest first. `connected`: its socket is open and it said hello
-- within p_alive_seconds (a process killed outright cannot mark its sockets closed).
CREATE FUNCTION mmc_displays(p_now timestamptz, p_alive_seconds integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'display_id', id, 'name', name, 'clinics', clinics, 'sound', sound,
               'voice', voice, 'last_announced', last_announced,
               'connected', connected AND last_seen > p_now - make_interval(secs => p_alive_seconds),
               'last_seen', last_seen,
               'silent_seconds', floor(extract(epoch FROM p_now - last_seen)))
             ORDER BY name, id), '[]'::jsonb)
      FROM displays
$$;
