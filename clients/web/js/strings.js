// The strings tables and the page language: Arabic (right to left) by default, English
// one tap away; elements name their string with data-i18n and get it as textContent.

import ar from "./i18n/ar.js";
import en from "./i18n/en.js";

export const TABLES = { ar, en };
export const DEFAULT_LANG = "ar";
const STORAGE_KEY = "mmc.lang";
const listeners = new Set();
let current = DEFAULT_LANG;

export function lang() {
  return current;
}

export function otherLang(code = current) {
  return code === "ar" ? "en" : "ar";
}

/** The string `key` in `code` (default: the page's language) with {name} filled in. */
export function t(key, vars = {}, code = current) {
  const table = TABLES[code] || TABLES[DEFAULT_LANG];
  const text = table[key] ?? TABLES[DEFAULT_LANG][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

/** A clinic's name in `code`, from a server frame that carries name and name_ar. */
export function clinicName(item, code = current) {
  if (!item) return "";
  const ar = item.name_ar ?? item.clinic_name_ar;
  const en = item.name ?? item.clinic_name;
  return (code === "ar" ? ar || en : en || ar) || item.clinic || "";
}

export function floorName(floor, code = current) {
  if (floor === null || floor === undefined || floor === "") return "";
  return floor === "M" ? t("floor.M", {}, code) : t("floor.n", { floor }, code);
}

/** Fill every [data-i18n] (text), [data-i18n-label] (aria-label) and
 *  [data-i18n-placeholder] under `root` from the current table. */
export function applyStrings(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  for (const el of root.querySelectorAll("[data-i18n-other]")) {
    el.textContent = t(el.dataset.i18nOther, {}, otherLang());
    el.setAttribute("lang", otherLang());
  }
}

/** Set the page's language (`requested`, else the stored choice, else Arabic). */
export function setLang(requested) {
  let code = requested;
  if (!TABLES[code]) {
    try { code = localStorage.getItem(STORAGE_KEY); } catch { code = null; }
  }
  if (!TABLES[code]) code = DEFAULT_LANG;
  current = code;
  if (requested && TABLES[requested]) {
    try { localStorage.setItem(STORAGE_KEY, code); } catch { /* private mode */ }
  }
  document.documentElement.lang = code;
  document.documentElement.dir = code === "ar" ? "rtl" : "ltr";
  applyStrings();
  for (const listener of listeners) listener(code);
  return code;
}

export function onLangChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Wire a button that switches between the two languages. */
export function bindLangSwitch(button) {
  button.addEventListener("click", () => setLang(otherLang()));
  const label = () => {
    button.setAttribute("lang", otherLang());
  };
  onLangChange(label);
  label();
}

/** A time of day, 24-hour with Latin digits, as the wall clock and forms show it. */
export function clockTime(date, { seconds = true } = {}) {
  const parts = [date.getHours(), date.getMinutes()];
  if (seconds) parts.push(date.getSeconds());
  return parts.map((n) => String(n).padStart(2, "0")).join(":");
}
