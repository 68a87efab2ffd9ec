DROP FUNCTION IF EXISTS mmc_fresh_pins(date, text);
