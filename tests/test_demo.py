"""`python -m server demo` plays a committee morning against a real server through the
protocol: examinees arrive, staff call, serve and finish, routes end."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent


async def test_a_short_demo_calls_serves_and_completes_routes(dsn: str, tmp_path: Path) -> None:
    """A bounded run at high speed leaves calls, completions and finished routes behind."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(tmp_path), LOG_FORMAT="json", LOG_LEVEL="warning")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "demo", "--database-url", dsn, "--port", "0",
        "--speed", "300", "--duration", "30", "--seed", "7",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, err.decode()[-2000:]
    printed = out.decode()
    assert re.search(r"http://127\.0\.0\.1:\d+/display\?clinics=\w+", printed), printed
    followed = re.search(r"with ID (\d+), male", printed)
    assert followed, printed

    conn = await asyncpg.connect(dsn)
    try:
        calls = await conn.fetchval("SELECT count(*) FROM queues WHERE called_at IS NOT NULL")
        served = await conn.fetchval("SELECT count(*) FROM queues WHERE status = 'COMPLETED'")
        finished = await conn.fetchval("SELECT count(*) FROM routes WHERE status = 'completed'")
        exams = await conn.fetchval("SELECT count(DISTINCT (exam_type, gender)) FROM routes")
        staff = await conn.fetchval(
            "SELECT count(*) FROM admins WHERE role = 'staff' AND username LIKE 'demo-%'")
        # Registered at the desk, then signed in with the slip's code.
        registered = await conn.fetchval(
            """SELECT count(*) FROM registrations r
                WHERE r.registered_by = 'demo-reception' AND EXISTS (
                      SELECT 1 FROM sessions s
                       WHERE s.role = 'patient' AND s.subject = r.patient_id)""")
        clinics = await conn.fetchval("SELECT count(*) FROM clinics WHERE is_active")
        followed_route = await conn.fetchval(
            "SELECT exam_type FROM routes WHERE patient_id = $1", followed.group(1))
    finally:
        await conn.close()
    assert calls > 0 and served > 0 and finished > 0, (calls, served, finished, err[-3000:])
    assert staff == clinics
    assert registered > 0, "some examinees came through the reception desk"
    assert exams >= 8, "the first arrivals cover exam types and both genders"
    assert followed_route == "recruitment"
