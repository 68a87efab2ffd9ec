// The signed-in session of a staff page (console, admin, reception): the login form, the
// token kept for this tab, `auth` on every (re)connect, and the way back to the login.

import { ConnectionBadge } from "./connection.js";
import { RequestError, Socket } from "./socket.js";
import { bindLangSwitch, setLang, t } from "./strings.js";

/** The text a failed request shows a member of staff. */
export function failure(error) {
  const code = error instanceof RequestError ? error.code : "internal";
  if (code === "offline" || code === "timeout") return t("error.offline");
  if (code === "unavailable") return t("error.unavailable");
  if (code === "rate_limited") return t("error.rate");
  if (code === "unauthorized") return t("error.session");
  if (code === "forbidden") return t("staff.forbidden");
  if (code === "empty") return t("console.empty");
  // The server's own words (a validation message) beat a generic sentence.
  return error && error.message && error.message !== code ? error.message : t("error.generic");
}

export function byId(id) {
  return document.getElementById(id);
}

/** An element with a class and text, built without markup (the CSP forbids innerHTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export class StaffSession {
  /**
   * @param {object} o
   * @param {string} o.key where this page keeps its token (sessionStorage: this tab only)
   * @param {string} o.op the login op (`staff.login` or `admin.login`)
   * @param {string[]} o.roles the roles this page serves
   * @param {(who: object) => void} o.signedIn called with {role, subject, clinic} after
   *   every successful login or auth, before channels are resumed
   * @param {() => void} o.signedOut called when the session ends, for any reason
   */
  constructor({ key, op, roles, signedIn, signedOut }) {
    Object.assign(this, { key, op, roles, signedIn, signedOut });
    this.token = read(key);
    this.who = null;
    this.socket = new Socket({ onConnect: (socket) => this.onConnect(socket) });
  }

  start() {
    setLang();
    bindLangSwitch(byId("lang"));
    const badge = new ConnectionBadge(byId("connection"), document.body);
    this.socket.onState((s) => badge.update(s));
    byId("login-form").addEventListener("submit", (event) => this.login(event));
    byId("logout").addEventListener("click", () => this.logout());
    this.show();
    this.socket.start();
  }

  show() {
    const signedIn = Boolean(this.token && this.who);
    const main = byId("screen-main");
    const arriving = signedIn && main.hidden;
    const focusWasInLogin = byId("screen-login").contains(document.activeElement);
    byId("screen-login").hidden = signedIn || Boolean(this.token);
    main.hidden = !signedIn;
    if (arriving && focusWasInLogin) {
      // The form just hid under the focus: move it to the page's heading, so screen
      // readers hear where they are and the shortcut keys work at once.
      const heading = main.querySelector("h1");
      heading.tabIndex = -1;
      heading.focus();
    }
    byId("logout").hidden = !signedIn;
    byId("signed-in").textContent = signedIn ? t("staff.signedIn", { name: this.who.subject }) : "";
    document.body.dataset.screen = signedIn ? "main" : this.token ? "loading" : "login";
  }

  async onConnect(socket) {
    if (!this.token) return;
    let who;
    try {
      who = await socket.request("auth", { token: this.token });
    } catch (error) {
      if (error.code === "unauthorized" || error.code === "forbidden") {
        this.end(t("error.session"));
        return;
      }
      throw error;
    }
    this.become(who);
  }

  become(who) {
    if (!this.roles.includes(who.role)) {
      this.end(t("staff.wrongRole"));
      return;
    }
    this.who = who;
    this.signedIn(who);
    this.show();
  }

  /** Back to the login screen, with `reason` under the form. */
  end(reason) {
    const had = this.token !== null;
    this.token = null;
    this.who = null;
    write(this.key, null);
    for (const name of [...this.socket.channels.keys()]) this.socket.channels.delete(name);
    if (had) this.signedOut();
    this.show();
    byId("login-error").textContent = reason || "";
  }

  async login(event) {
    event.preventDefault();
    const error = byId("login-error");
    const username = byId("username").value.trim();
    const password = byId("password").value;
    if (!username || !password) {
      error.textContent = t("staff.missing");
      return;
    }
    error.textContent = "";
    const button = byId("login-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const result = await this.socket.request(this.op, { username, password });
      this.token = result.token;
      write(this.key, this.token);
      byId("password").value = "";
      this.become({ role: result.role, subject: result.username, clinic: result.clinic });
    } catch (failed) {
      error.textContent = failed.code === "unauthorized" ? t("staff.wrongPassword")
        : failed.code === "forbidden" ? t("staff.wrongRole") : failure(failed);
    } finally {
      button.disabled = false;
    }
  }

  async logout() {
    const token = this.token;
    this.end("");
    try {
      await fetch("/api/v1/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    } catch { /* the session expires by itself */ }
    // A fresh socket: the old one still carries the identity.
    this.socket.stop();
    this.socket.start();
  }
}

function read(key) {
  try { return sessionStorage.getItem(key); } catch { return null; }
}

function write(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch { /* private mode: the page works until closed */ }
}
