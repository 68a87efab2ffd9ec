-- Undo 016: the `me` snapshot carries the patient's full ID again (as in 004).

CREATE OR REPLACE FUNCTION mmc_snapshot_me(p_patient text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('seq', mmc_head_seq(), 'state', jsonb_build_object(
        'patient_id', p_patient,
        'route', (SELECT mmc_route_view(r.id) FROM routes r
                   WHERE r.patient_id = p_patient AND r.day = mmc_local_day(p_now)),
        'entry', mmc_patient_status(p_patient, p_now)))
$$;
