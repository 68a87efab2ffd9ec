"""Issue 21's hardening: login limits that cannot be turned on users, clinic-wide PIN
guessing, bounded anonymous sockets and /metrics, no 500 from Unicode digits, ordering
at the edges, response headers, the first admin's password and masked IDs."""

from __future__ import annotations

import asyncio
import itertools
import stat
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve

from clients.python import Client
from server import accounts, commands, errors
from server.app import create_app
from server.auth import Principal
from server.clock import ManualClock
from server.config import Config, ConfigError
from server.db import Database
from server.hub import Subscription
from server.outbox import Outbox
from server.protocol import Channel, CloseCode
from server.views import ViewCache, mask_patient_id
from server.ws import WsLimits
from tests.api import ADMIN_PASSWORD, STAFF_PASSWORD, create_accounts, running_api
from tests.harness import MS, serve
from tests.people import ADMIN, ANON, patient, run, staff
from tests.realtime import WAIT, Peer, hub_of, running, token_for

ADMIN_LOGIN = {"username": "admin", "password": ADMIN_PASSWORD}
WRONG_ADMIN = {"username": "admin", "password": "not the password"}


async def login_from(db: Database, address: str, op: str, args: dict[str, str]) -> object:
    return await commands.execute(db, ANON, op, args, client=address)


async def admin_db(db: Database, dsn: str) -> Database:
    await create_accounts(dsn)
    return db


# --- login limits ---------------------------------------------------------------------

async def test_wrong_passwords_from_one_address_do_not_lock_the_admin_out_elsewhere(
        db: Database, dsn: str) -> None:
    """Thirty wrong admin passwords from one address: that address is refused, even
    with the right password; the real admin at another address logs in."""
    await admin_db(db, dsn)
    for _ in range(30):
        with pytest.raises((errors.Unauthorized, errors.RateLimited)):
            await login_from(db, "203.0.113.9", "admin.login", WRONG_ADMIN)
    with pytest.raises(errors.RateLimited):
        await login_from(db, "203.0.113.9", "admin.login", ADMIN_LOGIN)
    result = await login_from(db, "198.51.100.4", "admin.login", ADMIN_LOGIN)
    assert isinstance(result, dict) and result["role"] == "admin"


async def test_only_failures_count_and_a_success_clears_them(db: Database, dsn: str) -> None:
    """Nine failures, a success, nine failures, a success: never refused."""
    await admin_db(db, dsn)
    for _ in range(2):
        for _ in range(9):
            with pytest.raises(errors.Unauthorized):
                await login_from(db, "203.0.113.7", "staff.login",
                                 {"username": "staff_eyes", "password": "wrong one"})
        await login_from(db, "203.0.113.7", "staff.login",
                         {"username": "staff_eyes", "password": STAFF_PASSWORD})


async def test_an_examinee_logging_in_again_and_again_is_never_refused(db: Database) -> None:
    """Successful patient logins are not attempts to limit (a reloading phone)."""
    for _ in range(25):
        await login_from(db, "203.0.113.8", "patient.login",
                         {"patient_id": "41000000001", "gender": "male"})


async def test_an_address_has_a_ceiling_across_accounts(db: Database, dsn: str) -> None:
    """Past `login_address_limit` failures, that address waits, whatever the account;
    another address does not."""
    await admin_db(db, dsn)
    await run(db, ADMIN, "admin.settings.set", {"key": "login_address_limit", "value": 10})
    for i in range(10):
        with pytest.raises(errors.Unauthorized):
            await login_from(db, "203.0.113.5", "staff.login",
                             {"username": f"guess{i}", "password": "x"})
    with pytest.raises(errors.RateLimited):
        await login_from(db, "203.0.113.5", "staff.login",
                         {"username": "staff_eyes", "password": STAFF_PASSWORD})
    await login_from(db, "203.0.113.6", "staff.login",
                     {"username": "staff_eyes", "password": STAFF_PASSWORD})


async def test_a_login_flood_does_not_starve_a_staff_socket(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """While 16 sockets flood logins (an argon2 verification each), a staff socket's 20
    commands are all answered before half the flood is: verification is bounded
    (auth.VERIFY_SLOTS at a time, each waiting its turn at most auth.VERIFY_WAIT), so it
    cannot take every core."""
    limits = WsLimits(rate=1_000, burst=1_000)
    async with running(dsn, clock, limits=limits) as live:
        staff_peer = await Peer.open(live.ws_url)
        await staff_peer.call("auth", {"token": await token_for(db, staff("eyes"))})
        flooders = [await Peer.open(live.ws_url) for _ in range(16)]
        names = itertools.count()
        for peer in flooders:
            for rid in (1, 2):
                await peer.send_raw(orjson.dumps({
                    "id": rid, "op": "staff.login",
                    "args": {"username": f"flood{next(names)}", "password": "wrong"}}).decode())

        def answered() -> int:
            return sum(len([f for f in p.pushed if "ok" in f]) for p in flooders)

        for _ in range(20):
            await staff_peer.call("queue.status", {"clinic": "eyes"})
        answered_during = answered()
        for peer in flooders:
            await peer.wait_for(lambda pushed: sum("ok" in f for f in pushed) >= 2,
                                within=120_000 * MS)
        assert answered_during < 16, answered_during
        # A login that waited past auth.VERIFY_WAIT for its turn is told to retry.
        assert all(f["error"] in ("unauthorized", "unavailable")
                   for p in flooders for f in p.pushed)
        for peer in [staff_peer, *flooders]:
            await peer.close()


# --- PIN guessing across identities ----------------------------------------------------

async def test_pin_guessing_across_identities_rotates_the_clinic_pin(db: Database) -> None:
    """Made-up identities each trying one PIN: past the clinic-wide threshold the PIN
    changes at once, staff hear PIN_ROTATED (reason guessing), and it is recorded."""
    await run(db, ADMIN, "admin.settings.set", {"key": "pin_clinic_max_attempts", "value": 5})
    pin = (await run(db, ADMIN, "pin.current", {"clinic": "eyes"}))["pins"]["eyes"]
    wrong = "99" if pin != "99" else "98"
    for i in range(5):
        who = await patient(db, f"4200000{i:04d}")
        await run(db, who, "queue.enter", {"clinic": "eyes"})
        await run(db, ADMIN, "queue.call", {"clinic": "eyes"})
        with pytest.raises(errors.WrongPin):
            await run(db, who, "pin.submit", {"clinic": "eyes", "pin": wrong})
    new_pin = (await run(db, ADMIN, "pin.current", {"clinic": "eyes"}))["pins"]["eyes"]
    assert new_pin != pin
    rotated = await db.pool.fetch(
        "SELECT data FROM events WHERE event_type = 'PIN_ROTATED' AND clinic_code = 'eyes'")
    assert any(r["data"].get("reason") == "guessing" for r in rotated)
    record = await db.pool.fetchrow("SELECT * FROM pin_forced_rotations")
    assert record["clinic_code"] == "eyes" and record["wrong_attempts"] == 5


# --- anonymous sockets and /metrics ----------------------------------------------------

async def test_an_anonymous_socket_holds_few_channels_and_is_closed_when_silent(
        dsn: str, clock: ManualClock) -> None:
    """Anonymous: at most 8 channels; silent past its limit it is closed with 1008,
    while one that keeps talking (a display's hello, a ping) stays open."""
    limits = WsLimits(anonymous_idle_seconds=500 * MS)
    async with running(dsn, clock, limits=limits) as live:
        silent, talking = await Peer.open(live.ws_url), await Peer.open(live.ws_url)
        clinics = ["lab", "xray", "vitals", "ecg", "audio", "eyes", "internal", "ent"]
        for code in clinics:
            await silent.call("subscribe", {"channel": f"clinic:{code}"})
        refused = await silent.request("subscribe", {"channel": "clinic:surgery"})
        assert refused["ok"] is False and refused["error"] == "bad_request"
        await talking.call("subscribe", {"channel": "clinic:lab"})
        hello = {"name": "Hall", "clinics": ["lab"], "sound": True, "voice": "server",
                 "last_announced": None}
        for i in range(8):
            await asyncio.sleep(150 * MS)
            await talking.call("display.hello" if i % 2 else "ping", hello if i % 2 else None)
        assert await silent.wait_closed() == CloseCode.POLICY
        assert talking.close_code is None
        await talking.close()


async def test_an_anonymous_resume_replays_only_so_far(dsn: str, clock: ManualClock,
                                                       db: Database) -> None:
    """An anonymous resume from far back gets a reset snapshot, not the whole log."""
    limits = WsLimits(anonymous_replay=3)
    async with running(dsn, clock, limits=limits) as live:
        for i in range(5):
            await run(db, await patient(db, f"4300000{i:04d}"), "queue.enter",
                      {"clinic": "lab"})
        first = await db.call("SELECT min(id) FROM events")
        peer = await Peer.open(live.ws_url)
        await peer.call("subscribe", {"channel": "clinic:lab", "since": first - 1})
        await peer.wait_for(lambda f: any(x.get("type") == "snapshot" for x in f))
        snapshot = next(f for f in peer.pushed if f["type"] == "snapshot")
        assert snapshot["reset"] is True and peer.events() == []
        await peer.close()


async def test_metrics_are_cached_and_can_require_a_token(dsn: str, clock: ManualClock) -> None:
    """With METRICS_TOKEN, /metrics wants it; scrapes in a row share one refresh."""
    config = Config(database_url=dsn, db_pool_min=1, db_pool_max=4, metrics_token="s3cret")
    async with serve(create_app(config, clock=clock)) as live, \
            httpx.AsyncClient(base_url=live.http_url) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={
            "Authorization": "Bearer wrong"})).status_code == 401
        for _ in range(5):
            answer = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
            assert answer.status_code == 200 and "queue" in answer.text
        assert live.server.lifespan.state["scrape"].refreshes == 1


# --- never a 500 -----------------------------------------------------------------------

def as_header(value: str) -> bytes:
    """Header bytes as a client could send them: Latin-1 where it can (b"\\xb2" reads
    as "²" on the server), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


@pytest.mark.parametrize("since", ["²", "¹²", "١٢", "１２", "𝟏𝟐", "৪", "12\u200b", "-1", "1e3",
                                   "9" * 19])
async def test_unicode_digits_in_since_and_last_event_id_are_a_bad_request(
        dsn: str, clock: ManualClock, since: str) -> None:
    """`since` and `Last-Event-ID` with digits int() refuses: 400, never 500."""
    async with running_api(dsn, clock) as api, asyncio.timeout(WAIT):
        # (bounded: a server that took "١٢" as 12 would open the stream and keep it)
        answer = await api.client.get("/api/v1/events-stream",
                                      params={"channel": "clinic:lab", "since": since})
        assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
        header = as_header(since)
        answer = await api.client.get("/api/v1/events-stream",
                                      params={"channel": "clinic:lab"},
                                      headers={"Last-Event-ID": header})
        assert answer.status_code == 400


@pytest.mark.parametrize("length", ["²", "١٢", "1e3", "-5", "9" * 40])
async def test_a_content_length_of_unicode_digits_is_refused_plainly(
        dsn: str, clock: ManualClock, length: str) -> None:
    """Content-Length that is no ASCII number: the envelope, never a 500."""
    async with running_api(dsn, clock) as api:
        request = api.client.build_request(
            "POST", "/api/v1/patient-login", content=b"{}",
            headers={"Content-Length": as_header(length)})
        try:
            answer = await api.client.send(request)
        except httpx.HTTPError:
            return  # the HTTP server itself refused the framing: no handler ran
        assert answer.status_code in (400, 413), answer.text


# --- ordering at the edges -------------------------------------------------------------

def test_a_live_subscription_never_gets_an_event_at_or_below_its_seq() -> None:
    """A subscription that went live at seq 10 skips events up to 10 and takes 11, 12."""
    outbox = Outbox(16)
    sub = Subscription(Channel("clinic", "clinic:lab", "clinic:lab", clinic="lab"), outbox,
                       seq=10, live=True)
    for seq in (8, 9, 10, 11, 12):
        assert sub.deliver(seq, f'{{"seq": {seq}}}')
    assert [outbox._frames.popleft() for _ in range(len(outbox))] == [
        '{"seq": 11}', '{"seq": 12}']


async def test_the_client_subscribes_once_when_asked_before_it_is_connected(
        dsn: str, clock: ManualClock) -> None:
    """subscribe() before the first connection is up sends one subscribe, not two."""
    async with running(dsn, clock) as live:
        client = Client(live.ws_url)
        connecting = asyncio.create_task(client.connect())
        await client.subscribe("clinic:lab")
        await connecting
        await client.request("ping")
        snapshots = []
        while not client._frames.empty():
            frame = client._frames.get_nowait()
            if frame.get("type") == "snapshot":
                snapshots.append(frame)
        assert len(snapshots) == 1
        await client.close()


async def test_the_client_resumes_from_the_highest_seq_it_has_seen() -> None:
    """Frames that come with a lower seq after a higher one (a server replaying an
    overlap) never move the client's resume point back."""
    sent = [{"type": "snapshot", "channel": "clinic:lab", "seq": 10, "state": {},
             "reset": False},
            {"type": "event", "channel": "clinic:lab", "seq": 7, "event": "CALLED",
             "data": {"number": 1}, "at": "2026-03-01T05:00:00+00:00"}]

    async def scripted(ws: ServerConnection) -> None:
        async for message in ws:
            request = orjson.loads(message)
            await ws.send(orjson.dumps({"id": request["id"], "ok": True,
                                        "result": {"channel": "clinic:lab", "seq": 10}}))
            for frame in sent:
                await ws.send(orjson.dumps(frame))

    async with websockets_serve(scripted, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with Client(f"ws://127.0.0.1:{port}", heartbeat=None) as client:
            await client.subscribe("clinic:lab")
            for _ in sent:
                await client.next_frame()
            assert client.last_seq["clinic:lab"] == 10
            assert client._subscribe_args("clinic:lab") == {"channel": "clinic:lab",
                                                            "since": 10}


async def test_live_subscribers_get_a_reset_snapshot_after_events_were_pruned(
        dsn: str, clock: ManualClock, db: Database) -> None:
    """The hub is away while events are written and pruned: when it comes back its live
    subscribers get a reset snapshot, as a resuming client would."""
    async with running(dsn, clock) as live:
        hub = hub_of(live)
        peer = await Peer.open(live.ws_url)
        await peer.call("subscribe", {"channel": "clinic:lab"})
        dsn_of_hub = hub.dsn
        hub.dsn = "postgresql://127.0.0.1:1/nowhere"  # the way back is cut for a while
        await db.pool.execute("SELECT pg_terminate_backend($1)", hub.backend_pid)
        for _ in range(200):
            if not hub.listening:
                break
            await asyncio.sleep(10 * MS)
        for i in range(3):
            await run(db, await patient(db, f"4400000{i:04d}"), "queue.enter",
                      {"clinic": "lab"})
        assert await db.call("SELECT mmc_prune_events(now() + interval '1 hour')") > 0
        hub.dsn = dsn_of_hub
        await peer.wait_for(lambda f: any(x.get("type") == "snapshot" and x["reset"]
                                          for x in f))
        reset = next(f for f in peer.pushed if f.get("type") == "snapshot" and f["reset"])
        assert reset["state"]["waiting"] == 3
        assert hub.resets == 1
        await peer.close()


def test_the_view_cache_keeps_a_bounded_number_of_generations() -> None:
    """A day's worth of route keys does not pile up; a value computed before the
    stamps were forgotten is still refused."""
    cache, now = ViewCache(max_stamps=100), datetime(2026, 3, 1, tzinfo=UTC)
    early = cache.generation("route:1")
    for i in range(10_000):
        cache.drop(f"route:{i}")
    assert len(cache) <= 100
    cache.store("route:1", "me", early, (1, {}), now)
    assert cache.get("route:1", "me", now) is None
    cache.store("route:1", "me", cache.generation("route:1"), (2, {}), now)
    assert cache.get("route:1", "me", now) == (2, {})


# --- headers and first run -------------------------------------------------------------

async def test_every_response_carries_the_security_headers(dsn: str, clock: ManualClock) -> None:
    """nosniff and no-referrer everywhere; no-store on token and PIN answers; HSTS when
    PUBLIC_URL is https."""
    async with running_api(dsn, clock) as api:
        login = await api.post("patient-login", {"patient_id": "45000000001",
                                                 "gender": "male"})
        pin = await api.get("pin-status", api.tokens["staff_eyes"])
        missing = await api.client.get("/nowhere")
        for answer in (login, pin, missing, await api.client.get("/health")):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
        for answer in (login, pin):
            assert answer.headers["cache-control"] == "no-store"
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert "strict-transport-security" not in login.headers
    config = Config(database_url=dsn, db_pool_min=1, db_pool_max=2,
                    public_url="https://queue.example.org")
    async with serve(create_app(config, clock=clock)) as live, \
            httpx.AsyncClient(base_url=live.http_url) as client:
        answer = await client.get("/health")
        assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_a_short_admin_password_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="at least 12 characters"):
        Config.from_env({"ADMIN_PASSWORD": "elevenchars"})
    assert Config.from_env({"ADMIN_PASSWORD": "twelve chars"}).admin_password == "twelve chars"


def test_a_generated_first_password_goes_to_an_owner_only_file(tmp_path: Path) -> None:
    path = accounts.write_first_password(tmp_path / "data", "admin", "a generated secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "admin\na generated secret\n"


@pytest.mark.parametrize(("patient_id", "shown"), [
    ("12", "**"), ("1234", "****"), ("123456", "****56"), ("1234567", "****567"),
    ("12345678", "****5678"), ("123456789012", "********9012")])
async def test_masked_ids_show_at_most_four_digits_and_fewer_for_short_ids(
        db: Database, patient_id: str, shown: str) -> None:
    """The same mask in Python (events) and SQL (snapshots)."""
    assert mask_patient_id(patient_id) == shown
    assert await db.call("SELECT mmc_mask_patient($1)", patient_id) == shown


async def test_a_staff_snapshot_shows_no_digit_of_a_four_digit_id(db: Database) -> None:
    await run(db, await patient(db, "4321"), "queue.enter", {"clinic": "eyes"})
    state = await db.call("SELECT mmc_snapshot_staff('eyes', $1)", db.now())
    assert [w["patient"] for w in state["state"]["waiting_list"]] == ["****"]


async def test_a_reception_account_is_a_role_of_its_own(db: Database) -> None:
    async with db.transaction() as conn:
        made = await accounts.create_reception(conn, "desk9", "desk password")
    assert made == {"username": "desk9", "role": "reception"}
    desk = Principal("reception", "desk9")
    with pytest.raises(errors.Forbidden):
        await run(db, desk, "queue.call", {"clinic": "eyes"})
    slip = await run(db, desk, "reception.register",
                     {"patient_id": "46000000001", "gender": "female", "exam_type": "cooks"})
    assert slip["login_code"] and slip["current"]["clinic"] == "lab"
