// The admin's settings tab: every setting with what it means, an input of its kind, and
// the server's validation message beside the field when a value is refused.

import { byId, el, failure } from "./staff-session.js";
import { t } from "./strings.js";

const CHOICES = { patient_registration: ["open", "registered"] };

export class SettingsTab {
  constructor(ctx) {
    this.ctx = ctx;
    this.values = null;
    this.errors = {};
    this.drafts = {};  // what was typed into a refused field stays there to be corrected
    this.saved = null;
  }

  show() {
    this.load();
  }

  async load() {
    try {
      this.values = (await this.ctx.socket.request("admin.settings.get")).settings;
    } catch (error) {
      this.errors._all = failure(error);
    }
    this.render();
  }

  read(key, input) {
    const current = this.values[key];
    if (typeof current === "boolean") return input.checked;
    if (typeof current === "number") {
      // A number the server can judge; text that is not one goes as text and is refused there.
      const text = input.value.trim();
      return /^-?\d+$/.test(text) ? Number(text) : text;
    }
    return input.value;
  }

  async save(key, input, button) {
    button.disabled = true;
    this.errors[key] = "";
    this.saved = null;
    try {
      this.values = (await this.ctx.socket.request("admin.settings.set",
        { key, value: this.read(key, input) })).settings;
      this.saved = key;
      delete this.drafts[key];
    } catch (error) {
      this.errors[key] = failure(error);
      this.drafts[key] = input.type === "checkbox" ? input.checked : input.value;
    }
    this.render();
    const again = byId(`setting-${key}`);
    if (again) again.focus();
  }

  render() {
    const box = byId("settings-rows");
    box.replaceChildren();
    if (this.errors._all) box.append(el("p", "error", this.errors._all));
    if (!this.values) return;
    for (const key of Object.keys(this.values).sort()) {
      const value = key in this.drafts ? this.drafts[key] : this.values[key];
      const row = el("form", "setting");
      row.noValidate = true;
      row.dataset.key = key;
      const id = `setting-${key}`;
      const label = el("label", "field-label", t(`setting.${key}`) === `setting.${key}` ? key : t(`setting.${key}`));
      label.htmlFor = id;
      const code = el("code", "setting-key", key);
      code.dir = "ltr";
      let input;
      if (typeof this.values[key] === "boolean") {
        input = el("input");
        input.type = "checkbox";
        input.checked = value;
      } else if (CHOICES[key]) {
        input = el("select");
        for (const choice of CHOICES[key]) {
          const option = el("option", "", t(`setting.${key}.${choice}`));
          option.value = choice;
          input.append(option);
        }
        input.value = value;
      } else {
        input = el("input");
        input.type = "text";
        input.value = String(value);
        input.dir = "ltr";
        if (typeof this.values[key] === "number") input.inputMode = "numeric";
      }
      input.id = id;
      const error = el("p", "error", this.errors[key] || "");
      error.id = `${id}-error`;
      error.setAttribute("role", "alert");
      input.setAttribute("aria-describedby", `${id}-meaning ${id}-error`);
      if (this.errors[key]) input.setAttribute("aria-invalid", "true");
      const meaning = el("p", "hint", t(`setting.${key}.meaning`));
      meaning.id = `${id}-meaning`;
      const button = el("button", "link-button small", t("admin.save"));
      button.type = "submit";
      row.addEventListener("submit", (event) => {
        event.preventDefault();
        this.save(key, input, button);
      });
      const line = el("div", "setting-line");
      line.append(input, button);
      if (this.saved === key) line.append(el("span", "saved", t("admin.saved")));
      row.append(label, code, meaning, line, error);
      box.append(row);
    }
  }
}
