// One clinic's panel on the waiting-room display: its names, floor, the number called
// now, the last five calls, the waiting count; built with createElement, text only.

import { floorName, lang, t } from "./strings.js";

function el(tag, className, attrs = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

export class ClinicCard {
  constructor(code) {
    this.code = code;
    this.state = null;        // {name, name_ar, floor, called, serving, waiting, is_paused}
    this.root = el("section", "clinic", { "aria-labelledby": `clinic-${code}-name`, "data-clinic": code });
    const head = el("h2", "clinic-name", { id: `clinic-${code}-name` });
    this.nameAr = el("span", "", { lang: "ar" });
    this.nameEn = el("span", "", { lang: "en" });
    head.append(this.nameAr, this.nameEn);
    this.floor = el("p", "floor");
    this.paused = el("p", "paused");
    this.paused.hidden = true;
    this.nowLabel = el("p", "label");
    this.number = el("p", "number", { "aria-live": "polite", "aria-atomic": "true" });
    const recent = el("div", "recent");
    this.recentLabel = el("p", "label");
    this.recentList = el("ol", "recent-list");
    recent.append(this.recentLabel, this.recentList);
    const waiting = el("p", "waiting");
    this.waitingLabel = el("span", "label");
    this.waitingCount = el("span", "count");
    waiting.append(this.waitingLabel, this.waitingCount);
    const foot = el("div", "clinic-foot");
    foot.append(recent, waiting);
    this.root.append(head, this.floor, this.paused, this.nowLabel, this.number, foot);
    this.render();
  }

  /** A snapshot from the server replaces everything. */
  reset(state) {
    this.state = {
      name: state.name, name_ar: state.name_ar, floor: state.floor,
      called: Array.isArray(state.called) ? state.called.slice(0, 5) : [],
      serving: Array.isArray(state.serving) ? state.serving.slice() : [],
      waiting: state.waiting ?? state.total_waiting ?? 0,
      is_paused: !!state.is_paused,
    };
    this.render();
  }

  /** An event of the clinic's public channel; the state follows what it says. */
  apply(event, data) {
    const s = this.state;
    if (!s) return;
    const n = data.number;
    if (event === "CALLED" || event === "RECALLED") {
      s.called = [n, ...s.called.filter((x) => x !== n)].slice(0, 5);
      if (!s.serving.includes(n)) s.serving.push(n);
      if (event === "CALLED") s.waiting = Math.max(0, s.waiting - 1);
    } else if (event === "ENTERED") {
      s.waiting += 1;
    } else if (["COMPLETED", "NO_SHOW", "CANCELLED", "SKIPPED"].includes(event)) {
      s.serving = s.serving.filter((x) => x !== n);
    } else if (event === "CLINIC_PAUSED" || event === "CLINIC_RESUMED") {
      s.is_paused = data.is_paused ?? event === "CLINIC_PAUSED";
    }
    this.render();
  }

  setWaiting(count) {
    if (!this.state || typeof count !== "number") return;
    this.state.waiting = count;
    this.render();
  }

  names() {
    const s = this.state || {};
    return { ar: s.name_ar || s.name || this.code, en: s.name || s.name_ar || this.code };
  }

  render() {
    const s = this.state;
    const names = this.names();
    this.nameAr.textContent = names.ar;
    this.nameEn.textContent = names.en;
    const arabicFirst = lang() === "ar";
    this.nameAr.className = arabicFirst ? "name-first" : "name-second";
    this.nameEn.className = arabicFirst ? "name-second" : "name-first";
    this.floor.textContent = s ? floorName(s.floor) : "";
    this.nowLabel.textContent = t("display.nowCalling");
    this.recentLabel.textContent = t("display.lastCalls");
    this.waitingLabel.textContent = t("display.waiting");
    this.paused.textContent = t("display.paused");
    this.paused.hidden = !(s && s.is_paused);
    const current = s && s.called.length ? String(s.called[0]) : "";
    if (current) {
      this.number.textContent = current;
      this.number.classList.remove("empty");
    } else {
      this.number.textContent = t("display.noCall");
      this.number.classList.add("empty");
    }
    const earlier = s ? s.called.slice(1) : [];
    this.recentList.parentElement.hidden = !earlier.length;
    this.recentList.replaceChildren(...earlier.map((n) => {
      const item = el("li");
      item.textContent = String(n);
      return item;
    }));
    this.waitingCount.textContent = s ? String(s.waiting) : "";
  }
}
