-- Undo 004: the realtime functions and the retention watermark.
DROP FUNCTION IF EXISTS mmc_clinic_positions(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_snapshot_admin(timestamptz);
DROP FUNCTION IF EXISTS mmc_snapshot_me(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_snapshot_staff(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_mask_patient(text);
DROP FUNCTION IF EXISTS mmc_snapshot_clinic(text, timestamptz);
DROP FUNCTION IF EXISTS mmc_head_seq();
DROP FUNCTION IF EXISTS mmc_prune_events(timestamptz);
DROP TABLE IF EXISTS event_watermark;
