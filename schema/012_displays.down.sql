DROP FUNCTION IF EXISTS mmc_displays(timestamptz, integer);
DROP FUNCTION IF EXISTS mmc_display_hello(uuid, text, jsonb, boolean, text, bigint, timestamptz,
                                          integer);
DROP TABLE IF EXISTS displays;
