-- Undo 005.
DROP FUNCTION IF EXISTS mmc_stats_queues(timestamptz);
DROP FUNCTION IF EXISTS mmc_path_choose(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_rate_hit(text, text, integer, integer, timestamptz);
