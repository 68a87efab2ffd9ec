// The patient's sign-in form: ID, gender and, behind "I have a slip from reception", the
// slip's one-time code; what it sends to patient.login and what it says when refused.

import { onLangChange, t } from "./strings.js";

// As server/accounts.py: 8 characters without look-alikes (no 0/O, 1/I/L).
const CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LENGTH = 8;
const ID_DIGITS = /^[0-9\u0660-\u0669\u06F0-\u06F9]{2,12}$/;
const ARABIC_DIGITS = /[\u0660-\u0669\u06F0-\u06F9]/g;
// Dashes and spaces of any kind (a code copied from a message may carry a non-breaking
// space or an en dash); the server itself ignores "-" and " ".
const SEPARATORS = /[\s\u00A0\u2010-\u2015\u2212-]/g;
// After the digits are made ASCII, anything left of the Arabic block is a letter typed
// on an Arabic keyboard: the code's letters are English.
const ARABIC_LETTERS = /[\u0600-\u06FF]/;

const byId = (id) => document.getElementById(id);

/** A slip's code as the server accepts it: Arabic-Indic digits as ASCII, no dashes or
 *  spaces, upper case. */
export function normaliseCode(text) {
  return text
    .replace(ARABIC_DIGITS, (d) => String(d.charCodeAt(0) & 0xF))
    .replace(SEPARATORS, "")
    .toUpperCase();
}

/** The string key for a request that failed for a reason other than the person's input. */
export function failureKey(code) {
  if (code === "offline" || code === "timeout") return "error.offline";
  if (code === "unavailable") return "error.unavailable";
  if (code === "rate_limited" || code === "locked") return "error.rate";
  return "error.generic";
}

export class LoginForm {
  constructor() {
    this.form = byId("login-form");
    this.id = byId("patient-id");
    this.code = byId("login-code");
    this.slip = byId("slip-box");
    this.error = byId("login-error");
    this.said = "";   // the key shown under the form, said again in a new language
    onLangChange(() => { this.error.textContent = this.said ? t(this.said) : ""; });
  }

  /** patient.login's arguments, or null after saying which field is wrong; the code
   *  goes only when one was typed. */
  read() {
    const patientId = this.id.value.trim();
    const gender = new FormData(this.form).get("gender");
    if (!ID_DIGITS.test(patientId)) return this.wrong("login.badId", this.id);
    if (!gender) return this.wrong("login.noGender", this.form.querySelector("input[name=gender]"));
    const typed = this.code.value.trim();
    if (!typed) {
      this.say("");
      return { patient_id: patientId, gender };
    }
    const code = normaliseCode(typed);
    if (ARABIC_LETTERS.test(code)) return this.wrong("login.codeLatin", this.code);
    if (code.length !== CODE_LENGTH || [...code].some((c) => !CODE_ALPHABET.includes(c))) {
      return this.wrong("login.badCode", this.code);
    }
    this.say("");
    return { patient_id: patientId, gender, login_code: code };
  }

  /** The server said no: what to check, in the page's language. */
  refused(failure, args) {
    if (failure.code === "unauthorized") {
      if (args.login_code) {
        this.wrong("login.refusedCode", this.code);
      } else {
        // Open registration: the gender does not match. Registered only: a code is
        // needed. Either way the person checks the two fields and sees the code's box.
        this.slip.open = true;
        this.wrong("login.refused", this.id);
      }
    } else if (failure.code === "bad_request") {
      this.wrong("login.badId", this.id);   // the code's shape was checked above
    } else {
      this.say(failureKey(failure.code));
    }
  }

  /** Signed in: the one-time code is spent, so it does not stay on a shared phone. */
  done() {
    this.code.value = "";
    this.slip.open = false;
    this.say("");
  }

  say(key) {
    this.said = key;
    this.error.textContent = key ? t(key) : "";
    for (const field of [this.id, this.code]) field.removeAttribute("aria-invalid");
  }

  wrong(key, field) {
    this.say(key);
    if (field === this.code) this.slip.open = true;
    if (field !== this.form.querySelector("input[name=gender]")) field.setAttribute("aria-invalid", "true");
    field.focus();
    return null;
  }
}
