// The admin's staff tab: every account (staff, reception, admin), a new account, disable
// and enable, and a password reset; the server ends the account's sessions everywhere.

import { byId, el, failure } from "./staff-session.js";
import { clinicName, t } from "./strings.js";

const MIN_PASSWORD = 8;  // as the server's accounts module; it checks again

export class StaffTab {
  constructor(ctx) {
    this.ctx = ctx;
    this.accounts = null;
    this.resetting = null;
    byId("staff-form").addEventListener("submit", (event) => this.create(event));
    byId("new-role").addEventListener("change", () => this.roleChanged());
    byId("reset-form").addEventListener("submit", (event) => this.reset(event));
    byId("reset-cancel").addEventListener("click", () => byId("reset-dialog").close());
  }

  show() {
    this.clinicsKnown();
    this.load();
  }

  /** Fill the clinic choice once the board has told us the clinics. */
  clinicsKnown() {
    const select = byId("new-clinic");
    const chosen = select.value;
    select.replaceChildren();
    for (const clinic of this.ctx.clinics()) {
      const option = el("option", "", clinicName(clinic));
      option.value = clinic.clinic;
      select.append(option);
    }
    if (chosen) select.value = chosen;
  }

  roleChanged() {
    byId("new-clinic").disabled = byId("new-role").value !== "staff";
  }

  async load() {
    try {
      this.accounts = (await this.ctx.socket.request("admin.staff.list")).accounts;
      byId("staff-error").textContent = "";
    } catch (error) {
      byId("staff-error").textContent = failure(error);
    }
    this.render();
  }

  async create(event) {
    event.preventDefault();
    const error = byId("staff-form-error");
    const done = byId("staff-form-done");
    const role = byId("new-role").value;
    const args = { username: byId("new-username").value.trim(), password: byId("new-password").value, role };
    if (role === "staff") args.clinic = byId("new-clinic").value;
    error.textContent = done.textContent = "";
    if (args.password.length < MIN_PASSWORD) {
      error.textContent = t("admin.passwordHint");
      return;
    }
    const button = byId("staff-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const account = await this.ctx.socket.request("admin.staff.create", args);
      done.textContent = t("admin.created", { name: account.username });
      byId("new-username").value = byId("new-password").value = "";
      await this.load();
    } catch (failed) {
      error.textContent = failed.code === "conflict" ? t("admin.taken") : failure(failed);
    } finally {
      button.disabled = false;
    }
  }

  async toggle(account, button) {
    button.disabled = true;
    byId("staff-error").textContent = "";
    const op = account.is_active ? "admin.staff.disable" : "admin.staff.enable";
    try {
      await this.ctx.socket.request(op, { username: account.username });
      await this.load();
    } catch (error) {
      byId("staff-error").textContent = failure(error);
      button.disabled = false;
    }
  }

  openReset(account) {
    this.resetting = account.username;
    byId("reset-title").textContent = t("admin.resetFor", { name: account.username });
    byId("reset-password").value = "";
    byId("reset-error").textContent = "";
    byId("reset-dialog").showModal();
    byId("reset-password").focus();
  }

  async reset(event) {
    event.preventDefault();
    if (byId("reset-password").value.length < MIN_PASSWORD) {
      byId("reset-error").textContent = t("admin.passwordHint");
      return;
    }
    try {
      await this.ctx.socket.request("admin.staff.reset_password",
        { username: this.resetting, password: byId("reset-password").value });
      byId("reset-dialog").close();
      await this.load();
    } catch (error) {
      byId("reset-error").textContent = failure(error);
    }
  }

  render() {
    const rows = byId("staff-rows");
    rows.replaceChildren();
    const known = new Map(this.ctx.clinics().map((c) => [c.clinic, c]));
    for (const account of this.accounts || []) {
      const tr = el("tr");
      tr.dataset.username = account.username;
      const name = el("th", "", account.username);
      name.scope = "row";
      name.dir = "ltr";
      const clinic = account.clinic ? clinicName(known.get(account.clinic) || { clinic: account.clinic }) : "–";
      const active = el("td", account.is_active ? "" : "tag tag-bad",
        t(account.is_active ? "admin.active" : "admin.disabled"));
      const cell = el("td");
      const actions = el("div", "row-actions");  // a flex box inside: the cell stays a cell
      cell.append(actions);
      // Any account but one's own may be disabled (the server keeps the last admin).
      if (account.username !== this.ctx.session.who?.subject) {
        const toggle = el("button", "link-button small", t(account.is_active ? "admin.disable" : "admin.enable"));
        toggle.type = "button";
        toggle.dataset.action = account.is_active ? "disable" : "enable";
        toggle.setAttribute("aria-label", `${toggle.textContent}: ${account.username}`);
        toggle.addEventListener("click", () => this.toggle(account, toggle));
        actions.append(toggle);
      }
      const reset = el("button", "link-button small", t("admin.resetPassword"));
      reset.type = "button";
      reset.dataset.action = "reset";
      reset.setAttribute("aria-label", `${t("admin.resetPassword")}: ${account.username}`);
      reset.addEventListener("click", () => this.openReset(account));
      actions.append(reset);
      tr.append(name, el("td", "", t(`role.${account.role}`)), el("td", "", clinic), active, cell);
      rows.append(tr);
    }
  }
}
