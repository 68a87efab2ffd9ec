-- Undo 006: the report and job functions, the call marks and their trigger.
DROP FUNCTION IF EXISTS mmc_store_due_reports(timestamptz);
DROP FUNCTION IF EXISTS mmc_report_get(text, date, timestamptz);
DROP FUNCTION IF EXISTS mmc_report_build(text, date, timestamptz);
DROP FUNCTION IF EXISTS mmc_report_route_stats(date, date, text, text);
DROP FUNCTION IF EXISTS mmc_report_queue_stats(date, date, text, integer);
DROP FUNCTION IF EXISTS mmc_report_period(text, date);
DROP FUNCTION IF EXISTS mmc_clean_up(timestamptz, interval);
DROP FUNCTION IF EXISTS mmc_prune_old_events(timestamptz);
DROP FUNCTION IF EXISTS mmc_rotate_due_pins(timestamptz);
DROP FUNCTION IF EXISTS mmc_time_out_calls(timestamptz);
DROP FUNCTION IF EXISTS mmc_auto_call(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_auto_call_due(timestamptz);
DROP FUNCTION IF EXISTS mmc_auto_call_enabled();
DROP FUNCTION IF EXISTS mmc_auto_call_ready(clinics, timestamptz);
DROP INDEX IF EXISTS idx_pin_attempts_attempted_at;
DROP TRIGGER IF EXISTS note_calls ON queues;
DROP FUNCTION IF EXISTS mmc_note_call();
DROP TABLE IF EXISTS clinic_calls;
