-- Undo 001: drop everything it created, in dependency order.
DROP TABLE IF EXISTS rate_limits, reports, settings, events, pin_attempts, pins,
    queues, routes, route_templates, queue_counters, sessions, patients, admins, clinics CASCADE;
DROP FUNCTION IF EXISTS mmc_notify_events();
DROP FUNCTION IF EXISTS mmc_notify_queues();
DROP FUNCTION IF EXISTS mmc_touch_updated_at();
