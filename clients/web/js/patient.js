// The patient's phone: log in, choose the exam, then follow the route live on `me`
// (card, checklist, call banners, PIN, the way back after a no-show, completion).

import { Announcer, phoneChime } from "./audio.js";
import { ConnectionBadge } from "./connection.js";
import { LoginForm, failureKey } from "./login-form.js";
import { activeEntry, renderCard, renderRoute, station } from "./route-view.js";
import { RequestError, Socket } from "./socket.js";
import { bindLangSwitch, clinicName, floorName, onLangChange, setLang, t } from "./strings.js";
import { takeSlip } from "./slip-link.js";

const TOKEN_KEY = "mmc.patient.token";
const ID_KEY = "mmc.patient.id";
const EXAM_TYPES = ["recruitment", "promotion", "transfer", "referral", "contract", "courses",
  "aviation", "cooks"];
const PIN_DIGITS = /^[0-9\u0660-\u0669\u06F0-\u06F9]{2}$/;
const REFRESH_DELAY_MS = 60;
const RETRY_MAX_S = 10;  // a refused refresh is asked again after retry_after, at most this
// A phone left open past midnight must not keep yesterday's number: the server's
// route.get answers for its own today, so ask it now and then.
const RECHECK_MS = 2 * 60 * 1000;

// What tests read: the notices this page reacted to, in order.
const probe = (window.mmcProbe = { notices: [], ready: false });

const state = {
  token: read(TOKEN_KEY),
  patientId: read(ID_KEY),
  loaded: false,      // the first me snapshot (or route.get) has arrived
  route: null,
  near: null,         // {clinic, number, ahead} from NEAR_TURN while it still applies
  lost: null,         // {kind: noshow | cancelled, clinic} after losing a place
  info: null,         // {key, vars} a passing message (skipped, advanced)
};
const announcer = new Announcer();
let socket = null;
let loginForm = null;
let changesSeen = 0;  // `me` snapshots and events so far: a route.get asked before one is old

function read(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch { /* private mode: the page still works until closed */ }
}

function byId(id) {
  return document.getElementById(id);
}

function show(screen) {
  for (const id of ["screen-login", "screen-exam", "screen-route", "screen-done"]) {
    byId(id).hidden = id !== screen;
  }
  document.body.dataset.screen = screen.replace("screen-", "");
}

function message(error) {
  const code = error instanceof RequestError ? error.code : "internal";
  return t(code === "unauthorized" ? "error.session" : failureKey(code));
}

// --- drawing -------------------------------------------------------------------------

function render() {
  byId("logout").hidden = !state.token;
  byId("signed-in").textContent = state.token && state.patientId
    ? t("patient.signedIn", { id: state.patientId }) : "";
  if (!state.token) {
    show("screen-login");
    renderBanners(null);
    return;
  }
  if (!state.loaded) return;  // keep what is shown until the server has answered
  const route = state.route;
  if (!route) {
    show("screen-exam");
    renderBanners(null);
    return;
  }
  if (route.status === "completed") {
    show("screen-done");
    renderBanners(null);
    return;
  }
  show("screen-route");
  renderCard(route);
  renderRoute(route);
  const entry = activeEntry(route);
  const called = entry && entry.status !== "WAITING";
  byId("pin").hidden = !(called && entry.requires_pin);
  byId("no-pin").hidden = !(called && !entry.requires_pin);
  const missed = !entry && route.status === "active";
  byId("missed").hidden = !missed;
  if (missed) {
    const lost = state.lost || {};
    const key = lost.kind === "cancelled" ? "cancelled.banner" : "noshow.banner";
    const where = station(route, lost.clinic);
    byId("missed-text").textContent = where ? t(key, { clinic: clinicName(where) }) : t("card.noEntry");
  }
  renderBanners(entry);
}

function renderBanners(entry) {
  const turn = byId("turn");
  const calledNow = entry && entry.status === "CALLED";
  if (calledNow) {
    turn.textContent = t("turn.banner", { clinic: clinicName(entry), floor: floorName(entry.floor),
      number: entry.number });
    document.title = t("turn.title", { clinic: clinicName(entry) });
  } else {
    document.title = t("patient.title");
  }
  turn.hidden = !calledNow;
  const notice = byId("notice");
  let text = "";
  if (entry && entry.status === "WAITING" && state.near && state.near.clinic === entry.clinic
      && state.near.number === entry.number) {
    text = t("near.banner", { ahead: entry.ahead ?? state.near.ahead, clinic: clinicName(entry) });
  } else if (entry && state.info) {
    text = t(state.info.key, state.info.vars);
  }
  notice.textContent = text;
  notice.hidden = !text;
}

// --- the server's frames -------------------------------------------------------------

function onMe(frame) {
  if (frame.type === "snapshot") {
    changesSeen += 1;
    state.route = frame.state ? frame.state.route : null;
    state.loaded = true;
    render();
  } else if (frame.type === "event") {
    onEvent(frame.event, frame.data || {});
  } else if (frame.type === "notice") {
    onNotice(frame.notice, frame.data || {});
  }
}

function onEvent(event, data) {
  changesSeen += 1;
  const route = state.route;
  const current = route && route.current;
  const mine = current && current.clinic === data.clinic && current.number === data.number;
  if (["COMPLETED", "NO_SHOW", "CANCELLED"].includes(event) && mine) {
    // That number is no longer active: never keep showing it, even for a moment.
    route.current = null;
  }
  if (event === "NO_SHOW") state.lost = { kind: "noshow", clinic: data.clinic };
  if (event === "CANCELLED") state.lost = { kind: "cancelled", clinic: data.clinic };
  if (event === "SKIPPED" && mine) {
    const where = station(route, data.clinic);
    state.info = { key: "skipped.banner", vars: { clinic: clinicName(where || data) } };
    state.near = null;
  }
  if (event === "ROUTE_ADVANCED") {
    const where = station(route, data.clinic) || data;
    // The route's first clinic is on the card already; "next" is said after a station.
    state.info = data.from ? { key: "advanced.banner",
      vars: { clinic: clinicName(where), floor: floorName(data.floor ?? where.floor) } } : null;
    state.lost = null;
    state.near = null;
  }
  if (event === "CALLED" && mine) current.status = "CALLED";
  render();
  refreshSoon();
}

function onNotice(notice, data) {
  probe.notices.push({ notice, clinic: data.clinic, number: data.number });
  const entry = activeEntry(state.route);
  const mine = entry && entry.clinic === data.clinic && entry.number === data.number;
  if (notice === "POSITION" && mine) {
    Object.assign(entry, { ahead: data.ahead, position: data.position, eta_minutes: data.eta_minutes });
  } else if (notice === "NEAR_TURN") {
    state.near = { clinic: data.clinic, number: data.number, ahead: data.ahead };
    alertPerson([200]);
  } else if (notice === "YOUR_TURN") {
    if (mine) entry.status = "CALLED";
    state.near = null;
    state.info = null;
    alertPerson([400, 150, 400, 150, 400]);
    refreshSoon();
  }
  render();
}

/** A phone in a pocket: a chime and a vibration where the browser allows them. */
function alertPerson(pattern) {
  phoneChime(announcer);
  const active = navigator.userActivation ? navigator.userActivation.hasBeenActive : false;
  if (active && typeof navigator.vibrate === "function") navigator.vibrate(pattern);
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, REFRESH_DELAY_MS);
}

function refreshAfter(seconds) {
  clearTimeout(refreshTimer);
  const wait = Math.min(RETRY_MAX_S, Math.max(1, seconds || 1));
  refreshTimer = setTimeout(refresh, wait * 1000);
}

/** The route as the server has it now (the truth after any event). */
async function refresh() {
  if (!socket.online || !state.token) return;
  const asked = changesSeen;
  let route;
  try {
    route = await socket.request("route.get");
  } catch (error) {
    if (error.code === "not_found") route = null;
    else {
      // Refused (the database away a moment, a timeout): ask again, or the phone keeps
      // what the last event half told it (no number) until the next one. Offline, the
      // resumed channel's snapshot brings the truth instead.
      if (socket.online && state.token) refreshAfter(error.retryAfter);
      return;
    }
  }
  // A snapshot or event that came while this was asked may be newer than the answer
  // (read before it, sent after it): it told the truth, or an event asked again.
  if (asked !== changesSeen) return;
  state.route = route;
  state.loaded = true;
  if (activeEntry(state.route)) state.lost = null;
  render();
}

// --- sessions ------------------------------------------------------------------------

async function onConnect(sock) {
  if (pendingSlip) {
    await slipLogin(sock);
    return;
  }
  if (!state.token) return;
  try {
    await sock.request("auth", { token: state.token });
  } catch (error) {
    if (error.code === "unauthorized" || error.code === "forbidden") {
      endSession("error.session");
      return;
    }
    throw error;
  }
}

// --- a reception slip's QR link (js/slip-link.js) --------------------------------------

let pendingSlip = null;

async function slipLogin(sock) {
  const slip = pendingSlip;
  try {
    const result = await sock.request("patient.login", slip);
    pendingSlip = null;
    signedIn(result);
  } catch (error) {
    if (error.code === "offline" || error.code === "timeout") throw error;  // try on reconnect
    pendingSlip = null;
    render();
    // The ID and gender as the slip has them: only the code is left to check or type.
    byId("patient-id").value = slip.patient_id;
    const gender = byId("login-form").querySelector(`input[name=gender][value=${slip.gender}]`);
    if (gender) gender.checked = true;
    byId("slip-box").open = true;
    loginForm.say(error.code === "unauthorized" ? "slip.refused" : failureKey(error.code));
  }
}

function signedIn(result) {
  state.token = result.token;
  state.patientId = result.patient.patient_id;
  write(TOKEN_KEY, state.token);
  write(ID_KEY, state.patientId);
  state.loaded = false;
  socket.subscribe("me", onMe);
  render();
}

function endSession(reason) {
  state.token = null;
  state.route = null;
  state.loaded = false;
  state.lost = state.info = state.near = null;
  write(TOKEN_KEY, null);
  write(ID_KEY, null);
  socket.channels.delete("me");
  render();
  loginForm.say(reason);
}

async function login(event) {
  event.preventDefault();
  const args = loginForm.read();  // null when a field is wrong (said under the form)
  if (!args) return;
  try {
    const result = await socket.request("patient.login", args);
    loginForm.done();
    signedIn(result);
  } catch (failure) {
    loginForm.refused(failure, args);
  }
}

async function chooseExam(event) {
  event.preventDefault();
  const error = byId("exam-error");
  const examType = new FormData(byId("exam-form")).get("exam_type");
  if (!examType) {
    error.textContent = t("exam.none");
    return;
  }
  error.textContent = "";
  try {
    state.route = await socket.request("route.create", { exam_type: examType });
    state.loaded = true;
    render();
  } catch (failure) {
    error.textContent = message(failure);
  }
}

async function submitPin(event) {
  event.preventDefault();
  const error = byId("pin-error");
  const input = byId("pin-input");
  const entry = activeEntry(state.route);
  const pin = input.value.trim();
  if (!PIN_DIGITS.test(pin)) {
    error.textContent = t("pin.bad");
    return;
  }
  if (!entry) return;
  error.textContent = "";
  try {
    await socket.request("pin.submit", { clinic: entry.clinic, pin });
    input.value = "";
    await refresh();
  } catch (failure) {
    if (failure.code === "wrong_pin") error.textContent = t("pin.wrong");
    else if (failure.code === "locked") {
      error.textContent = t("pin.locked", { minutes: Math.max(1, Math.ceil((failure.retryAfter || 60) / 60)) });
    } else if (failure.code === "bad_request") error.textContent = t("pin.bad");
    else error.textContent = message(failure);
  }
}

async function rejoin() {
  const error = byId("missed-error");
  error.textContent = "";
  try {
    state.route = await socket.request("path.choose");
    state.lost = null;
    render();
  } catch (failure) {
    error.textContent = failure.code === "conflict" ? t("error.finished") : message(failure);
  }
}

async function logout() {
  const token = state.token;
  endSession("");
  try {
    await fetch("/api/v1/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch { /* the session expires by itself */ }
  // A fresh socket: the old one still carries the patient's identity.
  socket.stop();
  socket.start();
}

function buildExamChoices() {
  const list = byId("exam-list");
  for (const code of EXAM_TYPES) {
    const label = document.createElement("label");
    label.className = "choice";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "exam_type";
    input.value = code;
    const text = document.createElement("span");
    text.dataset.i18n = `exam.${code}`;
    text.textContent = t(`exam.${code}`);
    label.append(input, text);
    list.append(label);
  }
}

function start() {
  setLang();
  buildExamChoices();
  bindLangSwitch(byId("lang"));
  onLangChange(render);
  loginForm = new LoginForm();
  pendingSlip = takeSlip();
  if (pendingSlip) {  // a slip's link replaces whoever was signed in on this phone
    state.token = null;
    write(TOKEN_KEY, null);
  }
  socket = new Socket({ onConnect });
  if (state.token) socket.subscribe("me", onMe);
  const badge = new ConnectionBadge(byId("connection"), document.body);
  socket.onState((s) => badge.update(s));
  socket.start();
  byId("login-form").addEventListener("submit", login);
  byId("exam-form").addEventListener("submit", chooseExam);
  byId("pin-form").addEventListener("submit", submitPin);
  byId("rejoin").addEventListener("click", rejoin);
  byId("logout").addEventListener("click", logout);
  // Sound needs a tap first; the first tap anywhere unlocks it for the calls to come.
  document.addEventListener("pointerdown", () => announcer.unlock(), { once: true });
  setInterval(() => { if (state.token && state.loaded) refresh(); }, RECHECK_MS);
  render();
  probe.ready = true;
}

start();
