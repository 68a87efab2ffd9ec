// The one offline state every page shows: a badge within 3 s of losing the server, the
// page marked stale (numbers greyed) with the time it last heard from the server.

import { clockTime, onLangChange, t } from "./strings.js";

const FIRST_CONNECT_GRACE_MS = 1500;

export class ConnectionBadge {
  /** @param {HTMLElement} badge where the state is said  @param {HTMLElement} scope gets .stale */
  constructor(badge, scope) {
    this.badge = badge;
    this.scope = scope;
    this.state = { online: false, offlineSince: Date.now() };
    this.lastGood = null;
    this.everOnline = false;
    this.created = Date.now();
    onLangChange(() => this.render());
  }

  update(state) {
    if (this.state.online && !state.online) this.lastGood = new Date();
    if (state.online) this.everOnline = true;
    this.state = state;
    this.render();
  }

  render() {
    const { online } = this.state;
    const grace = FIRST_CONNECT_GRACE_MS - (Date.now() - this.created);
    if (!online && !this.everOnline && grace > 0) {
      // A page that is still making its first connection is not offline yet.
      clearTimeout(this.graceTimer);
      this.graceTimer = setTimeout(() => this.render(), grace);
      this.badge.hidden = true;
      this.badge.dataset.state = "connecting";
      return;
    }
    // Before the first connection there is nothing stale to grey; the badge still shows.
    this.scope.classList.toggle("stale", !online && this.everOnline);
    this.scope.classList.toggle("offline", !online);
    this.badge.hidden = online;
    this.badge.dataset.state = online ? "online" : "offline";
    if (online) {
      this.badge.textContent = "";
      return;
    }
    const parts = [t("status.offline")];
    if (this.lastGood) parts.push(t("status.lastUpdated", { time: clockTime(this.lastGood) }));
    this.badge.textContent = parts.join(" · ");
  }
}
