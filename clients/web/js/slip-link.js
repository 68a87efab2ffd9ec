// The reception slip's QR link (`/?slip=<id>.<m|f>.<code>`): made by the reception desk,
// read once by the patient page at start-up, which logs in with the one-time code.

const PARAM = "slip";

export function slipPath(patientId, gender, code) {
  return `/?${PARAM}=${patientId}.${gender === "female" ? "f" : "m"}.${code}`;
}

/** The login a slip link carries ({patient_id, gender, login_code}) or null; the link
 *  is taken out of the address bar at once, so a reload or a shared screen keeps no code. */
export function takeSlip() {
  const query = new URLSearchParams(location.search);
  const value = query.get(PARAM);
  if (!value) return null;
  history.replaceState(null, "", location.pathname);
  const [patientId, g, code] = value.split(".");
  if (!patientId || !code || !["m", "f"].includes(g)) return null;
  return { patient_id: patientId, gender: g === "f" ? "female" : "male", login_code: code };
}
