-- Undo 007: the mean service time is aggregated from the queue rows again.
CREATE OR REPLACE FUNCTION mmc_mean_service_seconds(p_clinic text, p_day date) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT avg(extract(epoch FROM completed_at - called_at))
           FROM queues
          WHERE clinic_code = p_clinic AND day = p_day AND status = 'COMPLETED'
            AND called_at IS NOT NULL AND completed_at >= called_at),
        (SELECT call_interval FROM clinics WHERE code = p_clinic))::numeric
$$;
DROP TRIGGER IF EXISTS count_service ON queues;
DROP FUNCTION IF EXISTS mmc_count_service();
DROP TABLE IF EXISTS clinic_day_stats;
