// The admin's PINs tab: today's PIN of every clinic that uses one, rotate one or all,
// and a print view with one card per clinic.

import { byId, el, failure } from "./staff-session.js";
import { clinicName, t } from "./strings.js";

export class PinsTab {
  constructor(ctx) {
    this.ctx = ctx;
    this.pins = null;
    this.visible = false;
    byId("pins-rotate-all").addEventListener("click", () => this.rotate(null, byId("pins-rotate-all")));
    byId("pins-print").addEventListener("click", () => window.print());
  }

  show() {
    this.visible = true;
    this.load();
  }

  hide() {
    this.visible = false;
  }

  /** A PIN_ROTATED event or an invalidation: read them again if they are on screen. */
  changed() {
    if (this.visible) this.load();
  }

  async load() {
    try {
      this.pins = (await this.ctx.socket.request("pin.current")).pins;
      byId("pins-error").textContent = "";
    } catch (error) {
      byId("pins-error").textContent = failure(error);
    }
    this.render();
  }

  async rotate(clinic, button) {
    button.disabled = true;
    try {
      // fresh: a new PIN at once, for the door sign that has leaked.
      const args = clinic ? { clinic, fresh: true } : { fresh: true };
      const { pins } = await this.ctx.socket.request("pin.rotate", args);
      this.pins = { ...(this.pins || {}), ...pins };
      byId("pins-error").textContent = "";
    } catch (error) {
      byId("pins-error").textContent = failure(error);
    } finally {
      button.disabled = false;
    }
    this.render();
  }

  render() {
    const list = byId("pin-cards");
    list.replaceChildren();
    if (!this.pins) return;
    const known = new Map(this.ctx.clinics().map((c) => [c.clinic, c]));
    // The board's order (the committee's), then any clinic it does not list.
    const order = [...known.keys()].filter((code) => code in this.pins);
    const rest = Object.keys(this.pins).filter((code) => !known.has(code)).sort();
    for (const code of [...order, ...rest]) {
      const clinic = known.get(code) || { clinic: code };
      const li = el("li", "pin-card");
      li.dataset.clinic = code;
      li.append(el("p", "pin-card-name", clinicName(clinic)));
      const pin = el("p", "pin-card-value", this.pins[code]);
      pin.dir = "ltr";
      li.append(pin);
      const button = el("button", "link-button small no-print", t("admin.rotate"));
      button.type = "button";
      button.setAttribute("aria-label", `${t("admin.rotate")}: ${clinicName(clinic)}`);
      button.addEventListener("click", () => this.rotate(code, button));
      li.append(button);
      list.append(li);
    }
  }
}
