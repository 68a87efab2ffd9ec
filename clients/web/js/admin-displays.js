// The admin's displays tab: every waiting-room screen's presence (connected or last seen,
// sound, voice, last call announced); a silent or muted screen stands out; identify.

import { byId, el, failure } from "./staff-session.js";
import { clinicName, clockTime, t } from "./strings.js";

const REFRESH_MS = 5000;  // presence is a table the server keeps; read it while on screen

export class DisplaysTab {
  constructor(ctx) {
    this.ctx = ctx;
    this.displays = null;
    this.timer = null;
  }

  show() {
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load(), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async load() {
    if (!this.ctx.socket.online) return;
    try {
      this.displays = (await this.ctx.socket.request("admin.displays")).displays;
      byId("displays-error").textContent = "";
    } catch (error) {
      byId("displays-error").textContent = failure(error);
    }
    this.render();
  }

  async identify(display, button) {
    button.disabled = true;
    try {
      await this.ctx.socket.request("admin.display.identify", { display_id: display.display_id });
    } catch (error) {
      byId("displays-error").textContent = failure(error);
    } finally {
      button.disabled = false;
    }
  }

  render() {
    const rows = byId("display-rows");
    rows.replaceChildren();
    const list = this.displays || [];
    byId("displays-empty").hidden = !this.displays || list.length > 0;
    for (const display of list) {
      const tr = el("tr");
      tr.dataset.displayId = display.display_id;
      tr.dataset.connected = String(display.connected);
      tr.dataset.sound = String(display.sound);
      const gone = !display.connected;
      const muted = !display.sound || display.voice === "none";
      if (gone || muted) tr.className = "needs-care";
      const name = el("th", "", display.name);
      name.scope = "row";
      const known = new Map(this.ctx.clinics().map((c) => [c.clinic, c]));
      const clinics = el("td", "", (display.clinics || [])
        .map((code) => clinicName(known.get(code) || { clinic: code })).join(" · "));
      const seen = display.last_seen ? clockTime(new Date(display.last_seen)) : "–";
      const link = el("td", gone ? "tag tag-bad" : "tag tag-ok",
        gone ? t("display.gone", { time: seen }) : t("display.connected"));
      link.dataset.field = "link";
      const sound = el("td", muted ? "tag tag-bad" : "tag tag-ok", t(display.sound ? "display.unlocked" : "display.muted"));
      sound.dataset.field = "sound";
      const last = el("td", "num", display.last_announced ?? "–");
      const action = el("td");
      const button = el("button", "link-button small", t("display.identifyIt"));
      button.type = "button";
      button.setAttribute("aria-label", `${t("display.identifyIt")}: ${display.name}`);
      button.disabled = gone;
      button.addEventListener("click", () => this.identify(display, button));
      action.append(button);
      tr.append(name, clinics, link, sound, el("td", "", t(`display.voice.${display.voice}`)), last, action);
      rows.append(tr);
    }
  }
}
