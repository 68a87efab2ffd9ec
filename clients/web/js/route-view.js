// What the patient's phone shows of a route: the current card (clinic, floor, number,
// ahead, ETA) and the checklist of stations, drawn from the server's frames only.

import { clinicName, floorName, t } from "./strings.js";

export const ACTIVE = ["WAITING", "CALLED", "IN_PROGRESS"];

function byId(id) {
  return document.getElementById(id);
}

/** The entry to show, or null: only an active entry of today's route has a number. */
export function activeEntry(route) {
  const entry = route && route.current;
  return entry && ACTIVE.includes(entry.status) && entry.number != null ? entry : null;
}

/** The station of `code` in the route, for its names and floor. */
export function station(route, code) {
  for (const stage of (route && route.stages) || []) {
    for (const item of stage) if (item.clinic === code) return item;
  }
  return null;
}

export function renderCard(route) {
  const entry = activeEntry(route);
  byId("card-facts").hidden = !entry;
  byId("card-status").hidden = !entry;
  byId("card-empty").hidden = !!entry;
  if (!entry) {
    byId("card-clinic").textContent = "";
    byId("card-floor").textContent = "";
    for (const id of ["card-number", "card-ahead", "card-eta", "card-status"]) byId(id).textContent = "";
    return;
  }
  byId("card-clinic").textContent = clinicName(entry);
  byId("card-floor").textContent = floorName(entry.floor);
  byId("card-status").textContent = t(`entry.${entry.status}`);
  byId("card-number").textContent = String(entry.number);
  // Ahead and the expected wait mean something only while waiting.
  const waiting = entry.status === "WAITING";
  byId("card-ahead").parentElement.hidden = !waiting;
  byId("card-eta").parentElement.hidden = !waiting;
  byId("card-ahead").textContent = waiting ? t("card.people", { n: entry.ahead ?? 0 }) : "";
  byId("card-eta").textContent = waiting ? t("card.minutes", { n: entry.eta_minutes ?? 0 }) : "";
  byId("card").dataset.status = entry.status;
}

export function renderRoute(route) {
  const list = byId("route-list");
  const stages = (route && route.stages) || [];
  list.replaceChildren(...stages.map((stage, index) => {
    const item = document.createElement("li");
    item.className = "stage";
    const title = document.createElement("p");
    title.className = "stage-title";
    title.textContent = t("route.stage", { n: index + 1 });
    const clinics = document.createElement("ul");
    clinics.className = "stations";
    clinics.replaceChildren(...stage.map((s) => {
      const row = document.createElement("li");
      row.className = `station state-${s.state}`;
      row.dataset.clinic = s.clinic;
      const name = document.createElement("span");
      name.className = "station-name";
      name.textContent = clinicName(s);
      const floor = document.createElement("span");
      floor.className = "station-floor";
      floor.textContent = floorName(s.floor);
      const state = document.createElement("span");
      state.className = "station-state";
      state.textContent = t(`route.${s.state}`);
      row.append(state, name, floor);
      if (s.state === "current") row.setAttribute("aria-current", "step");
      return row;
    }));
    item.append(title, clinics);
    return item;
  }));
}
