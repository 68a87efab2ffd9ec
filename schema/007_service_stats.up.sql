-- 007 service stats: a running sum of today's service times per clinic, kept by a
-- trigger, so the mean service time behind every ETA and path-choose is one row read
-- instead of re-aggregating every completed entry of the day on each command.

CREATE TABLE clinic_day_stats (
    clinic_code      text NOT NULL REFERENCES clinics(code) ON UPDATE CASCADE ON DELETE CASCADE,
    day              date NOT NULL,
    served           integer NOT NULL DEFAULT 0,
    service_seconds  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (clinic_code, day)
);
ALTER TABLE clinic_day_stats ENABLE ROW LEVEL SECURITY;

INSERT INTO clinic_day_stats (clinic_code, day, served, service_seconds)
SELECT clinic_code, day, count(*), sum(extract(epoch FROM completed_at - called_at))
  FROM queues
 WHERE status = 'COMPLETED' AND called_at IS NOT NULL AND completed_at >= called_at
 GROUP BY clinic_code, day;

CREATE FUNCTION mmc_count_service() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'COMPLETED' AND OLD.status IS DISTINCT FROM 'COMPLETED'
       AND NEW.called_at IS NOT NULL AND NEW.completed_at >= NEW.called_at THEN
        INSERT INTO clinic_day_stats AS s (clinic_code, day, served, service_seconds)
        VALUES (NEW.clinic_code, NEW.day, 1,
                extract(epoch FROM NEW.completed_at - NEW.called_at))
        ON CONFLICT (clinic_code, day) DO UPDATE
           SET served = s.served + 1,
               service_seconds = s.service_seconds + excluded.service_seconds;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER count_service AFTER UPDATE OF status ON queues
    FOR EACH ROW EXECUTE FUNCTION mmc_count_service();

CREATE OR REPLACE FUNCTION mmc_mean_service_seconds(p_clinic text, p_day date) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT service_seconds / served FROM clinic_day_stats
          WHERE clinic_code = p_clinic AND day = p_day AND served > 0),
        (SELECT call_interval FROM clinics WHERE code = p_clinic))::numeric
$$;
