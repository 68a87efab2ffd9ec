-- 005 api: what the HTTP API adds to the rules: fixed-window counters in the migration plan's
-- rate_limits table (login attempts hold across processes), and path-choose on demand.

-- Count one hit of p_client on p_endpoint in the current window; returns 0 when
-- allowed, else the seconds until the window ends. Refused hits count too.
CREATE FUNCTION mmc_rate_hit(p_client text, p_endpoint text, p_limit integer,
                             p_window_seconds integer, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_window timestamptz := date_bin(make_interval(secs => p_window_seconds), p_now,
                                     timestamptz '2000-01-01 00:00:00+00');
    v_count integer;
BEGIN
    INSERT INTO rate_limits AS r (client_id, endpoint, request_count, window_start)
    VALUES (p_client, p_endpoint, 1, v_window)
    ON CONFLICT (client_id, endpoint, window_start)
    DO UPDATE SET request_count = r.request_count + 1
    RETURNING request_count INTO v_count;
    IF v_count <= p_limit THEN
        RETURN 0;
    END IF;
    RETURN greatest(1, ceil(extract(epoch FROM
        v_window + make_interval(secs => p_window_seconds) - p_now)))::integer;
END;
$$;

-- path-choose: where the patient should be now. With an active entry, that entry;
-- on an active route with none (after a no-show or cancellation), enter the clinic
-- of the current stage with the lowest expected wait, as a completed station does.
CREATE FUNCTION mmc_path_choose(p_patient text, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_day date := mmc_local_day(p_now);
    v_route routes;
    v_entry queues;
BEGIN
    PERFORM 1 FROM patients WHERE patient_id = p_patient FOR UPDATE;
    SELECT * INTO v_route FROM routes WHERE patient_id = p_patient AND day = v_day;
    IF NOT FOUND THEN
        PERFORM mmc_raise('MQ404', 'no route today');
    END IF;
    SELECT * INTO v_entry FROM queues
     WHERE patient_id = p_patient AND status IN ('WAITING', 'CALLED', 'IN_PROGRESS');
    IF FOUND THEN
        RETURN mmc_route_view(v_route.id) || jsonb_build_object('chosen', false);
    END IF;
    IF v_route.status <> 'active' THEN
        PERFORM mmc_raise('MQ409', 'your route for today is finished');
    END IF;
    PERFORM mmc_emit(mmc_advance(v_route.id, NULL, p_now));
    RETURN mmc_route_view(v_route.id) || jsonb_build_object('chosen', true);
END;
$$;

-- stats-queues: every active clinic's public numbers (no IDs), for screens and
-- clients that poll instead of holding a socket.
CREATE FUNCTION mmc_stats_queues(p_now timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'day', mmc_local_day(p_now),
        'clinics', coalesce(jsonb_agg(mmc_clinic_status(code, p_now) ORDER BY sort_order, code),
                            '[]'::jsonb))
      FROM clinics WHERE is_active
$$;
