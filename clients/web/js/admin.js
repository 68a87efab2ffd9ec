// The admin dashboard: sign-in, the tabs, and the live board of every clinic (fed by the
// `admin` channel: its snapshot, then a fresh stats.dashboard after each invalidation).

import { DisplaysTab } from "./admin-displays.js";
import { PinsTab } from "./admin-pins.js";
import { ReportsTab } from "./admin-reports.js";
import { SettingsTab } from "./admin-settings.js";
import { StaffTab } from "./admin-staff.js";
import { byId, el, failure, StaffSession } from "./staff-session.js";
import { clinicName, onLangChange, t } from "./strings.js";

const REFRESH_DELAY_MS = 60;  // a burst of invalidations asks once

// What tests read: how many board updates arrived, and whether the page is ready.
const probe = (window.mmcProbe = { ready: false, boardUpdates: 0 });

const state = { board: null, tab: "board" };
const session = new StaffSession({
  key: "mmc.admin.token", op: "admin.login", roles: ["admin"], signedIn, signedOut,
});
const socket = session.socket;
const ctx = {
  socket, session,
  clinics: () => (state.board ? state.board.clinics : []),
  day: () => (state.board ? state.board.day : null),
};
const tabs = {
  pins: new PinsTab(ctx),
  staff: new StaffTab(ctx),
  settings: new SettingsTab(ctx),
  displays: new DisplaysTab(ctx),
  reports: new ReportsTab(ctx),
};

function signedIn() {
  socket.subscribe("admin", onAdmin);
  select(state.tab);
}

function signedOut() {
  state.board = null;
  for (const tab of Object.values(tabs)) tab.hide?.();
  renderBoard();
}

// --- the board -----------------------------------------------------------------------

function onAdmin(frame) {
  if (frame.type === "snapshot") {
    setBoard(frame.state);
  } else if (frame.type === "event") {
    if (frame.event === "PIN_ROTATED") tabs.pins.changed();
    if (["CLINIC_PAUSED", "CLINIC_RESUMED"].includes(frame.event)) refreshSoon();
  }
}

function onInvalidate(frame) {
  if (frame.type !== "invalidate" || !session.who) return;
  if (frame.keys.includes("stats:dashboard")) refreshSoon();
  if (frame.keys.includes("pins:current")) tabs.pins.changed();
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(async () => {
    try {
      setBoard(await socket.request("stats.dashboard"));
    } catch { /* the next invalidation or reconnect brings it */ }
  }, REFRESH_DELAY_MS);
}

function setBoard(board) {
  const first = !state.board;
  state.board = board;
  probe.boardUpdates += 1;
  renderBoard();
  if (first) {
    tabs.staff.clinicsKnown();
    tabs.reports.dayKnown();
  }
}

function minutes(value) {
  return value === null || value === undefined ? "–" : t("console.minutes", { n: Math.round(value) });
}

function renderBoard() {
  const board = state.board;
  const rows = byId("board-rows");
  rows.replaceChildren();
  const totals = byId("totals");
  totals.replaceChildren();
  if (!board) return;
  const sums = board.totals || {};
  for (const [key, value] of [["console.waiting", sums.waiting], ["console.serving", sums.serving],
    ["console.served", sums.served_today], ["admin.noShows", sums.no_show_today]]) {
    const box = el("div");
    box.append(el("dt", "", t(key)), el("dd", "", value ?? 0));
    totals.append(box);
  }
  for (const clinic of board.clinics) {
    const tr = el("tr");
    tr.dataset.clinic = clinic.clinic;
    if (clinic.is_paused) tr.className = "is-paused";
    const name = el("th", "", clinicName(clinic));
    name.scope = "row";
    const serving = el("td", "num col-serving");
    const numbers = el("span", "", (clinic.serving || []).join(", ") || "–");
    numbers.dir = "ltr";
    serving.append(numbers);
    const status = el("td", clinic.is_paused ? "tag tag-bad" : "", t(clinic.is_paused ? "display.paused" : "admin.open"));
    const action = el("td");
    const button = el("button", "link-button small", t(clinic.is_paused ? "admin.resume" : "admin.pause"));
    button.type = "button";
    button.dataset.action = clinic.is_paused ? "resume" : "pause";
    button.setAttribute("aria-label", `${t(clinic.is_paused ? "admin.resume" : "admin.pause")}: ${clinicName(clinic)}`);
    button.addEventListener("click", () => pause(clinic, button));
    action.append(button);
    tr.append(name, el("td", "num col-waiting", clinic.waiting), serving,
      el("td", "num col-served", clinic.served_today), el("td", "", minutes(clinic.mean_wait_minutes)),
      status, action);
    rows.append(tr);
  }
}

async function pause(clinic, button) {
  button.disabled = true;
  byId("board-error").textContent = "";
  const op = clinic.is_paused ? "admin.clinic.resume" : "admin.clinic.pause";
  try {
    await socket.request(op, { clinic: clinic.clinic });
    refreshSoon();
  } catch (error) {
    byId("board-error").textContent = failure(error);
    button.disabled = false;
  }
}

// --- tabs ----------------------------------------------------------------------------

function select(name) {
  state.tab = name;
  for (const button of document.querySelectorAll("[role=tab]")) {
    const on = button.dataset.tab === name;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    byId(button.getAttribute("aria-controls")).hidden = !on;
  }
  document.body.dataset.tab = name;
  for (const [key, tab] of Object.entries(tabs)) {
    if (key === name) tab.show();
    else tab.hide?.();
  }
}

function bindTabs() {
  const buttons = [...document.querySelectorAll("[role=tab]")];
  for (const button of buttons) {
    button.addEventListener("click", () => select(button.dataset.tab));
    button.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 1, ArrowUp: -1 }[event.key];
      if (!step) return;
      const rtl = document.documentElement.dir === "rtl" && event.key.startsWith("Arrow")
        && (event.key === "ArrowRight" || event.key === "ArrowLeft");
      const index = buttons.indexOf(button) + (rtl ? -step : step);
      const next = buttons[(index + buttons.length) % buttons.length];
      select(next.dataset.tab);
      next.focus();
      event.preventDefault();
    });
  }
}

function start() {
  bindTabs();
  socket.onFrame(onInvalidate);
  onLangChange(() => {
    renderBoard();
    for (const tab of Object.values(tabs)) tab.render?.();
  });
  session.start();
  probe.ready = true;
}

start();
