// The clinic console: today's PIN (with a print view for the door), the waiting list with
// masked IDs, the patient being served and the six actions, live on clinic:<code>:staff.

import { bindShortcuts, SHORTCUTS } from "./keys.js";
import { byId, el, failure, StaffSession } from "./staff-session.js";
import { clinicName, onLangChange, t } from "./strings.js";

const ACTIONS = {
  call: { op: "queue.call", label: "console.call", needs: null },
  recall: { op: "queue.recall", label: "console.recall", needs: ["CALLED"] },
  start: { op: "queue.start", label: "console.start", needs: ["CALLED"] },
  done: { op: "queue.done", label: "console.done", needs: ["CALLED", "IN_PROGRESS"] },
  skip: { op: "queue.skip", label: "console.skip", needs: ["CALLED"] },
  no_show: { op: "queue.no_show", label: "console.noShow", needs: ["CALLED"] },
};
const TICK_MS = 15000;        // "time waited" is said in minutes
const REFRESH_DELAY_MS = 80;  // a burst of events asks for one fresh snapshot
const RETRY_FIRST_MS = 500;   // a refused snapshot is asked for again, backing off...
const RETRY_MAX_MS = 10000;   // ...to at most this

// What tests read: requests sent per action, and whether the page is ready.
const probe = (window.mmcProbe = { ready: false, sent: {} });

const state = { clinic: null, view: null, selected: null, busy: false, pin: null };
const session = new StaffSession({
  key: "mmc.console.token", op: "staff.login", roles: ["staff", "admin"],
  signedIn, signedOut,
});
const socket = session.socket;

function channel() {
  return `clinic:${state.clinic}:staff`;
}

function signedIn(who) {
  const asked = new URLSearchParams(location.search).get("clinic");
  const clinic = who.role === "staff" ? who.clinic : asked;
  if (!clinic) {
    session.end(t("console.chooseClinic"));
    return;
  }
  if (state.clinic && state.clinic !== clinic) socket.channels.delete(channel());
  state.clinic = clinic;
  socket.subscribe(channel(), onFrame);
  loadPin();
}

function signedOut() {
  state.clinic = state.view = state.selected = state.pin = null;
  state.busy = false;
  render();
}

// --- the server's frames -------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "snapshot") {
    state.view = frame.state;
    render();
  } else if (frame.type === "event") {
    if (frame.event === "PIN_ROTATED") loadPin();
    refreshSoon();
  }
}

let refreshTimer = null;
let refused = 0;  // fresh snapshots refused in a row
function refreshSoon(delay = REFRESH_DELAY_MS) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, delay);
}

/** Subscribing again asks the server for the list as it is now: a fresh snapshot. */
async function refresh() {
  // Offline there is nothing to ask: the reconnect subscribes afresh (signedIn).
  if (!state.clinic || !socket.online) return;
  const name = channel();
  socket.forget(name);
  try {
    await socket.resume(name);
    refused = 0;
  } catch (error) {
    // Refused (the database away a moment, a timeout): the server has let the old
    // subscription go and holds no new one, so no event would ask again. Ask again
    // while this socket is up and this clinic is still the one shown.
    if (!socket.online || name !== channel()) return;
    refused += 1;
    const told = (error.retryAfter || 0) * 1000;
    refreshSoon(Math.min(RETRY_MAX_MS, Math.max(told, RETRY_FIRST_MS * 2 ** Math.min(refused, 5))));
  }
}

async function loadPin() {
  try {
    const { pins } = await socket.request("pin.current", { clinic: state.clinic });
    state.pin = pins[state.clinic] ?? null;
  } catch (error) {
    state.pin = error.code === "bad_request" ? "" : state.pin;  // this clinic uses no PIN
  }
  render();
}

// --- actions -------------------------------------------------------------------------

function current() {
  const serving = state.view ? state.view.serving_list || [] : [];
  return serving.find((e) => e.number === state.selected) || serving[serving.length - 1] || null;
}

function allowed(action) {
  if (!state.view || state.busy) return false;
  const { needs } = ACTIONS[action];
  if (needs === null) return (state.view.waiting_list || []).length > 0 && !state.view.is_paused;
  const entry = current();
  return Boolean(entry && needs.includes(entry.status));
}

async function act(action) {
  if (!allowed(action)) return;
  const entry = current();
  if (action === "no_show" && !(await confirmNoShow(entry))) return;
  const args = action === "call" ? { clinic: state.clinic } : { clinic: state.clinic, number: entry.number };
  state.busy = true;  // every button waits for this reply: a double click calls one person
  byId("action-error").textContent = "";
  probe.sent[action] = (probe.sent[action] || 0) + 1;
  render();
  try {
    const result = await socket.request(ACTIONS[action].op, args);
    if (action === "call") state.selected = result.called.number;
    byId("action-done").textContent = t(`console.did.${action}`,
      { number: action === "call" ? result.called.number : entry.number });
  } catch (error) {
    byId("action-error").textContent = failure(error);
  } finally {
    state.busy = false;
    render();
    refreshSoon();
  }
}

function confirmNoShow(entry) {
  const dialog = byId("confirm-noshow");
  byId("confirm-text").textContent = t("console.confirmText", { number: entry.number });
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    byId("confirm-no").focus();
  });
}

// --- drawing -------------------------------------------------------------------------

function buildButtons() {
  const box = byId("actions");
  for (const { action, label } of SHORTCUTS) {
    const button = el("button", `action action-${action}`);
    button.type = "button";
    button.id = `act-${action}`;
    button.dataset.action = action;
    button.setAttribute("aria-keyshortcuts", label);
    const text = el("span", "action-text");
    text.dataset.i18n = ACTIONS[action].label;
    text.textContent = t(ACTIONS[action].label);
    const key = el("kbd", "key", label);
    key.setAttribute("aria-hidden", "true");
    button.append(text, key);
    button.addEventListener("click", () => act(action));
    box.append(button);
  }
}

function waited(since) {
  const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 60000));
  return t("console.minutes", { n: minutes });
}

function render() {
  const view = state.view;
  for (const action of Object.keys(ACTIONS)) byId(`act-${action}`).disabled = !allowed(action);
  byId("actions").setAttribute("aria-busy", String(state.busy));
  if (!view) return;
  byId("clinic-name").textContent = clinicName(view);
  byId("print-clinic").textContent = `${clinicName(view, "ar")} · ${clinicName(view, "en")}`;
  byId("paused").hidden = !view.is_paused;
  const serving = view.serving_list || [];
  const waitingList = view.waiting_list || [];
  byId("count-waiting").textContent = String(waitingList.length);
  byId("count-serving").textContent = String(serving.length);
  byId("count-served").textContent = String(view.served_today ?? 0);

  const entry = current();
  byId("current-number").textContent = entry ? String(entry.number) : "";
  byId("current-detail").textContent = entry
    ? `${t(`console.status.${entry.status}`)} · ${t("console.idShort", { id: entry.patient })}`
    : t("console.noCurrent");
  const list = byId("serving-list");
  list.replaceChildren();
  list.hidden = serving.length < 2;
  for (const item of serving) {
    const li = el("li");
    const pick = el("button", "pick", `${item.number} · ${t(`console.status.${item.status}`)}`);
    pick.type = "button";
    pick.setAttribute("aria-pressed", String(entry !== null && item.number === entry.number));
    pick.addEventListener("click", () => { state.selected = item.number; render(); });
    li.append(pick);
    list.append(li);
  }

  const rows = byId("waiting-rows");
  rows.replaceChildren();
  for (const item of waitingList) {
    const tr = el("tr");
    // The cells follow the page's direction; the masked ID inside reads left to right.
    const id = el("td");
    const masked = el("span", "masked", item.patient);
    masked.dir = "ltr";
    id.append(masked);
    tr.append(el("td", "num", item.number), id, el("td", "", waited(item.entered_at)),
      el("td", item.postpone_count ? "postponed" : "", item.postpone_count));
    rows.append(tr);
  }
  byId("waiting-empty").hidden = waitingList.length > 0;

  const pin = byId("pin-value");
  pin.textContent = state.pin || "";
  pin.hidden = !state.pin;
  byId("pin-none").hidden = state.pin !== "";
  byId("print-pin").hidden = !state.pin;
  const today = new Date();  // the door's own day, not UTC's
  byId("print-date").textContent = [today.getFullYear(), today.getMonth() + 1, today.getDate()]
    .map((n) => String(n).padStart(2, "0")).join("-");
}

function start() {
  buildButtons();
  bindShortcuts(act, { enabled: () => Boolean(session.who) });
  byId("print-pin").addEventListener("click", () => window.print());
  onLangChange(render);
  setInterval(render, TICK_MS);
  session.start();
  render();
  probe.ready = true;
}

start();
