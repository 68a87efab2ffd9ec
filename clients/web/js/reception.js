// The reception desk: register an examinee who has no smartphone (ID, gender, exam type)
// and print the slip: first clinic, floor, number, and a QR code that logs a phone in.

import { slipPath } from "./slip-link.js";
import { byId, el, failure, StaffSession } from "./staff-session.js";
import { clinicName, floorName, onLangChange, otherLang, t } from "./strings.js";

const EXAM_TYPES = ["recruitment", "promotion", "transfer", "referral", "contract", "courses",
  "aviation", "cooks"];
const ID_DIGITS = /^[0-9\u0660-\u0669\u06F0-\u06F9]{2,12}$/;

// What tests read: the last slip's QR address, and whether the page is ready.
const probe = (window.mmcProbe = { ready: false, qr: null });

let slip = null;
const session = new StaffSession({
  key: "mmc.reception.token", op: "staff.login", roles: ["reception", "admin"],
  signedIn: () => render(), signedOut: () => { slip = null; render(); },
});

async function register(event) {
  event.preventDefault();
  const error = byId("register-error");
  const id = byId("patient-id").value.trim();
  const form = new FormData(byId("register-form"));
  const gender = form.get("gender");
  const examType = form.get("exam_type");
  if (!ID_DIGITS.test(id)) error.textContent = t("login.badId");
  else if (!gender) error.textContent = t("login.noGender");
  else if (!examType) error.textContent = t("exam.none");
  else error.textContent = "";
  if (error.textContent) return;
  const button = byId("register-form").querySelector("button[type=submit]");
  button.disabled = true;
  try {
    slip = await session.socket.request("reception.register",
      { patient_id: id, gender, exam_type: examType });
    byId("register-form").reset();
    render();
    byId("slip-print").focus();
  } catch (failed) {
    error.textContent = failed.code === "bad_request" ? failure(failed) : failure(failed);
  } finally {
    button.disabled = false;
  }
}

function masked(id) {
  const shown = Math.min(4, Math.max(0, id.length - 4));
  return "*".repeat(id.length - shown) + (shown ? id.slice(-shown) : "");
}

function render() {
  byId("slip").hidden = !slip;
  byId("register").hidden = Boolean(slip);
  document.body.dataset.slip = slip ? "shown" : "none";
  if (!slip) return;
  const entry = slip.current || {};
  // Both languages, the page's first: the slip may be read by someone else.
  byId("slip-clinic").textContent = `${clinicName(entry)} · ${clinicName(entry, otherLang())}`;
  byId("slip-floor").textContent = floorName(entry.floor);
  byId("slip-number").textContent = entry.number ?? "–";
  byId("slip-id").textContent = masked(slip.patient_id);
  byId("slip-code").textContent = slip.login_code;
  byId("slip-date").textContent = slip.day || "";
  const path = slipPath(slip.patient_id, slip.gender, slip.login_code);
  const qr = `/qr.svg?path=${encodeURIComponent(path)}`;
  if (byId("slip-qr").getAttribute("src") !== qr) byId("slip-qr").src = qr;
  byId("slip-qr").alt = t("reception.qrAlt");
  probe.qr = qr;
}

function buildExamChoices() {
  const list = byId("exam-list");
  for (const code of EXAM_TYPES) {
    const label = el("label", "choice");
    const input = el("input");
    input.type = "radio";
    input.name = "exam_type";
    input.value = code;
    const text = el("span", "", t(`exam.${code}`));
    text.dataset.i18n = `exam.${code}`;
    label.append(input, text);
    list.append(label);
  }
}

function start() {
  buildExamChoices();
  byId("register-form").addEventListener("submit", register);
  byId("slip-print").addEventListener("click", () => window.print());
  byId("slip-new").addEventListener("click", () => {
    slip = null;
    render();
    byId("patient-id").focus();
  });
  onLangChange(render);
  session.start();
  render();
  probe.ready = true;
}

start();
