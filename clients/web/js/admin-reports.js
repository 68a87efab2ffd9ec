// The admin's reports tab: daily / weekly / monthly / annual for a chosen date, five
// charts (each with its table) and the same report as CSV from /api/v1/reports-<type>.

import { barChart, columnChart } from "./charts.js";
import { byId, failure } from "./staff-session.js";
import { clinicName, t } from "./strings.js";

const minutes = (seconds) => (seconds === null || seconds === undefined ? null : seconds / 60);

export class ReportsTab {
  constructor(ctx) {
    this.ctx = ctx;
    this.report = null;
    const date = byId("report-date");
    if (!date.value) date.value = localDate(new Date());
    this.touched = false;
    date.addEventListener("change", () => { this.touched = true; });
    byId("report-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    byId("report-csv").addEventListener("click", () => this.csv());
  }

  show() {
    this.dayKnown();
    if (!this.report) this.load();
  }

  /** The committee's day (its time zone, not this computer's) is the date to begin with. */
  dayKnown() {
    const date = byId("report-date");
    if (!this.touched && this.ctx.day()) date.value = this.ctx.day();
  }

  args() {
    return { type: byId("report-type").value, date: byId("report-date").value };
  }

  async load() {
    const error = byId("report-error");
    error.textContent = "";
    byId("report-form").setAttribute("aria-busy", "true");
    try {
      this.report = await this.ctx.socket.request("report.get", this.args());
    } catch (failed) {
      error.textContent = failure(failed);
    } finally {
      byId("report-form").setAttribute("aria-busy", "false");
    }
    this.render();
  }

  async csv() {
    const { type, date } = this.args();
    const error = byId("report-error");
    error.textContent = "";
    try {
      const response = await fetch(`/api/v1/reports-${type}?date=${encodeURIComponent(date)}&format=csv`,
        { headers: { Authorization: `Bearer ${this.ctx.session.token}` } });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        error.textContent = body.message || t("error.generic");
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = `report-${type}-${date}.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (failed) {
      error.textContent = failure(failed);
    }
  }

  render() {
    const box = byId("report-charts");
    box.replaceChildren();
    const report = this.report;
    if (!report) return;
    const total = report.total || {};
    byId("report-summary").textContent = t("report.summary", {
      start: report.start, end: report.end, entered: total.entered ?? 0, served: total.served ?? 0,
      noShow: total.no_show ?? 0, breaches: total.sla_breaches ?? 0,
    });
    const clinics = (report.clinics || []).filter((c) => c.entered > 0);
    const names = clinics.map((c) => clinicName(c));
    // The committee's working hours: from the first hour with anyone to the last.
    const all = report.hours || [];
    const busy = all.map((h, i) => (h.entered || h.served ? i : -1)).filter((i) => i >= 0);
    const hours = busy.length ? all.slice(busy[0], busy[busy.length - 1] + 1) : all;
    box.append(
      columnChart("hours", t("report.chart.hours"), hours.map((h) => String(h.hour).padStart(2, "0")),
        [{ name: t("report.served"), values: hours.map((h) => h.served) },
          { name: t("report.entered"), values: hours.map((h) => h.entered) }]),
      barChart("wait", t("report.chart.wait"), names, [
        { name: t("report.median"), values: clinics.map((c) => minutes(c.wait_median_seconds)) },
        { name: t("report.p90"), values: clinics.map((c) => minutes(c.wait_p90_seconds)) },
        { name: t("report.max"), values: clinics.map((c) => minutes(c.wait_max_seconds)) }]),
      barChart("clinics", t("report.chart.clinics"), names, [
        { name: t("report.served"), values: clinics.map((c) => c.served) },
        { name: t("report.noShow"), values: clinics.map((c) => c.no_show) }]),
      barChart("sla", t("report.chart.sla", { minutes: Math.round((report.target_wait_seconds || 0) / 60) }),
        names, [{ name: t("report.breaches"), values: clinics.map((c) => c.sla_breaches) }]),
      barChart("eta", t("report.chart.eta"), names, [
        { name: t("report.etaError"), values: clinics.map((c) => c.eta_mean_abs_error_minutes) }]),
    );
  }
}

function localDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
