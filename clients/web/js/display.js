// The waiting-room display: clinics from ?clinics=, their public channels, calls heard
// once (remembered per clinic by seq), an offline state, presence reports, Wake Lock.

import { Announcer } from "./audio.js";
import { ClinicCard } from "./clinic-card.js";
import { ConnectionBadge } from "./connection.js";
import { Socket } from "./socket.js";
import { applyStrings, clockTime, setLang, t } from "./strings.js";

const MAX_CLINICS = 6;
const CLINIC_CODE = /^[a-z][a-z0-9_]{0,31}$/;
const HELLO_EVERY_MS = 15000;
const RELOAD_AFTER_OFFLINE_MS = 10 * 60 * 1000;
const WAITING_REFRESH_MS = 1000;
const WAITING_RETRY_MAX_MS = 10000;

// What tests and the benchmark read: every call this page announced, in order.
const probe = (window.mmcProbe = { announced: [], played: null, ready: false });

const params = new URLSearchParams(location.search);
const codes = [...new Set((params.get("clinics") || "").split(",")
  .map((c) => c.trim().toLowerCase()).filter((c) => CLINIC_CODE.test(c)))].slice(0, MAX_CLINICS);
const displayName = (params.get("name") || codes.join(" · ") || "display").slice(0, 64);
// Per screen (its name and clinics): two displays opened in one browser keep apart.
const SCREEN = `${displayName}|${codes.join(",")}`;
const ANNOUNCED_KEY = `mmc.display.announced:${SCREEN}`;
const DISPLAY_ID_KEY = `mmc.display.id:${SCREEN}`;
const LAST_PLAYED_KEY = `mmc.display.lastPlayed:${SCREEN}`;

const storage = {
  get(key, fallback) {
    try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; }
  },
  set(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* private mode */ }
  },
};

const announced = storage.get(ANNOUNCED_KEY, {});   // clinic -> highest seq announced
const cards = new Map(codes.map((code) => [code, new ClinicCard(code)]));
const announcer = new Announcer();
probe.played = announcer.played;
announcer.onChange(() => {
  const played = announcer.played.at(-1);
  if (played) storage.set(LAST_PLAYED_KEY, played.seq);
});
let socket = null;

function byId(id) {
  return document.getElementById(id);
}

/** The seq of the last call this screen actually played (kept across reloads): what the
 *  admin's list shows, so a screen that shows calls but says nothing stands out. */
function lastAnnounced() {
  const played = announcer.played.at(-1);
  const seq = played ? played.seq : storage.get(LAST_PLAYED_KEY, null);
  return typeof seq === "number" ? seq : null;
}

function remember(code, seq) {
  if (typeof announced[code] === "number" && announced[code] >= seq) return;
  announced[code] = seq;
  storage.set(ANNOUNCED_KEY, announced);
}

function onClinicFrame(code, frame) {
  const card = cards.get(code);
  if (frame.type === "snapshot") {
    card.reset(frame.state || {});
    // Calls in a snapshot are the past: never heard from here, whatever came before.
    remember(code, frame.seq);
  } else if (frame.type === "event") {
    card.apply(frame.event, frame.data || {});
    if ((frame.event === "CALLED" || frame.event === "RECALLED") && frame.seq > (announced[code] ?? -1)) {
      remember(code, frame.seq);
      const call = { clinic: code, number: frame.data.number, seq: frame.seq, event: frame.event,
        names: card.names() };
      probe.announced.push({ clinic: code, number: call.number, seq: call.seq, event: call.event });
      announcer.announce(call);
    }
  }
}

let waitingTimer = null;
function refreshWaitingSoon(delay = WAITING_REFRESH_MS) {
  if (waitingTimer) return;
  waitingTimer = setTimeout(refreshWaiting, delay);
}

/** The clinics' waiting counts as the server has them: events move a count by one,
 *  and only this mends what no public event tells (a postponed number back in line). */
async function refreshWaiting() {
  waitingTimer = null;
  let body;
  try {
    const response = await fetch("/api/v1/stats-queues", { cache: "no-store" });
    if (response.status === 429 || response.status >= 500) {
      // Refused (the database away a moment, a flood): ask again as told, or the
      // counts wait for an invalidation that a quiet clinic may not send for long.
      const told = Number(response.headers.get("Retry-After")) || 1;
      if (socket.online) refreshWaitingSoon(Math.min(WAITING_RETRY_MAX_MS, told * 1000));
      return;
    }
    if (!response.ok) return;
    body = await response.json();
  } catch {
    return;  // offline: the badge says so, and coming back asks again
  }
  for (const clinic of body.result.clinics || []) {
    cards.get(clinic.clinic)?.setWaiting(clinic.total_waiting);
  }
}

function helloArgs() {
  const args = {
    name: displayName,
    clinics: codes,
    sound: announcer.unlocked,
    voice: announcer.voiceKind,
    last_announced: lastAnnounced(),
  };
  const id = storage.get(DISPLAY_ID_KEY, null);
  if (typeof id === "string" || typeof id === "number") args.display_id = id;
  return args;
}

async function hello(sock) {
  try {
    const result = await sock.request("display.hello", helloArgs());
    if (result && result.display_id !== undefined) storage.set(DISPLAY_ID_KEY, result.display_id);
  } catch (error) {
    // An id the server refuses (forgotten, or not one): introduce ourselves afresh, once.
    if ((error.code === "not_found" || error.code === "bad_request")
        && storage.get(DISPLAY_ID_KEY, null) !== null) {
      storage.set(DISPLAY_ID_KEY, null);
      await hello(sock);
    }
  }
}

function identify(data) {
  const overlay = byId("identify");
  byId("identify-name").textContent = data.name || displayName;
  overlay.hidden = false;
  clearTimeout(identify.timer);
  identify.timer = setTimeout(() => { overlay.hidden = true; }, Math.min(60, data.seconds || 10) * 1000);
}

async function unlockSound() {
  const overlay = byId("sound-overlay");
  const unlocked = await announcer.unlock();
  overlay.hidden = unlocked;
  if (announcer.context) {
    announcer.context.onstatechange = () => { overlay.hidden = announcer.unlocked; };
  }
  if (unlocked && socket && socket.online) hello(socket);
}

let wakeLock = null;
async function keepAwake() {
  if (!("wakeLock" in navigator) || document.visibilityState !== "visible" || wakeLock) return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
    wakeLock.addEventListener("release", () => { wakeLock = null; });
  } catch { /* not allowed here (battery saver, no permission): the kiosk's settings apply */ }
}

function layout() {
  const main = byId("clinics");
  main.dataset.count = String(cards.size);
  main.replaceChildren(...[...cards.values()].map((card) => card.root));
}

function start() {
  setLang(params.get("lang"));
  byId("display-name").textContent = displayName;
  document.title = `${t("display.title")}: ${displayName}`;
  if (!codes.length) {
    const problem = byId("problem");
    problem.textContent = t("display.badClinics");
    problem.hidden = false;
  }
  layout();
  const clock = byId("clock");
  const tick = () => { clock.textContent = clockTime(new Date(), { seconds: false }); };
  tick();
  setInterval(tick, 1000);

  socket = new Socket({ onConnect: hello });
  for (const code of codes) socket.subscribe(`clinic:${code}`, (frame) => onClinicFrame(code, frame));
  socket.onFrame((frame) => {
    if (frame.type === "notice" && frame.notice === "IDENTIFY") identify(frame.data || {});
    if (frame.type === "invalidate") refreshWaitingSoon();
  });
  const badge = new ConnectionBadge(byId("connection"), document.body);
  socket.onState((state) => {
    badge.update(state);
    if (state.online) refreshWaitingSoon();
  });
  socket.start();

  setInterval(() => { if (socket.online) hello(socket); }, HELLO_EVERY_MS);
  // A new day brings no event: start every clinic again from a snapshot of today.
  let day = new Date().toDateString();
  setInterval(() => {
    const today = new Date().toDateString();
    if (today === day || !socket.online) return;
    day = today;
    for (const code of codes) socket.subscribe(`clinic:${code}`, (frame) => onClinicFrame(code, frame));
  }, 60000);
  setInterval(() => {
    const state = socket.state();
    if (!state.online && Date.now() - state.offlineSince > RELOAD_AFTER_OFFLINE_MS) location.reload();
  }, 15000);

  byId("sound-overlay").addEventListener("click", unlockSound);
  unlockSound();
  keepAwake();
  document.addEventListener("visibilitychange", keepAwake);
  applyStrings();
  probe.ready = true;
}

start();
