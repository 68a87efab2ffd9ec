// Bar charts drawn as SVG (createElementNS: the CSP allows no markup), each in a figure
// with its numbers as a table beside it, so a screen reader reads the table, not the bars.

import { el } from "./staff-session.js";
import { t } from "./strings.js";

const NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function format(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** The table of a chart: a row per label, a column per series. */
function table(caption, labels, series) {
  const tableEl = el("table", "data chart-table");
  tableEl.append(el("caption", "", caption));
  const head = el("tr");
  head.append(el("th", "", ""));
  for (const s of series) {
    const th = el("th", "", s.name);
    th.scope = "col";
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const body = el("tbody");
  labels.forEach((label, i) => {
    const tr = el("tr");
    const th = el("th", "", label);
    th.scope = "row";
    tr.append(th);
    for (const s of series) tr.append(el("td", "num", format(s.values[i])));
    body.append(tr);
  });
  tableEl.append(thead, body);
  return tableEl;
}

function figure(name, title, svg, labels, series) {
  const fig = el("figure", "chart");
  fig.dataset.chart = name;
  fig.append(el("figcaption", "chart-title", title));
  if (labels.length === 0 || series.every((s) => s.values.every((v) => !v))) {
    fig.append(el("p", "hint", t("report.empty")));
    fig.dataset.empty = "true";
    return fig;
  }
  const pair = el("div", "chart-pair");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const details = el("details", "chart-data");
  details.append(el("summary", "", t("report.table")), table(title, labels, series));
  pair.append(svg, details);
  fig.append(pair);
  return fig;
}

function legend(svg, series, y) {
  let x = 0;
  series.forEach((s, i) => {
    svg.append(svgEl("rect", { x, y: y - 10, width: 12, height: 12, class: `bar s${i}` }));
    svg.append(svgEl("text", { x: x + 16, y, class: "axis" }, s.name));
    x += 24 + s.name.length * 8;
  });
}

/** Columns over `labels` (hours of the day): one series. */
export function columnChart(name, title, labels, series) {
  const width = 720;
  const height = 220;
  const pad = 28;
  const max = Math.max(1, ...series.flatMap((s) => s.values.map((v) => v || 0)));
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height + pad * 2 + 18}`, class: "chart-svg",
    direction: "ltr" });
  const step = (width - pad) / labels.length;
  svg.append(svgEl("text", { x: 0, y: 12, class: "axis" }, format(max)));
  svg.append(svgEl("line", { x1: pad, y1: height + pad, x2: width, y2: height + pad, class: "baseline" }));
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const value = s.values[i] || 0;
      const h = (value / max) * (height - 10);
      const w = (step - 4) / series.length;
      svg.append(svgEl("rect", { x: pad + i * step + j * w, y: height + pad - h, width: Math.max(1, w - 1),
        height: h, class: `bar s${j}` }));
    });
    if (labels.length <= 12 || i % 2 === 0) {
      svg.append(svgEl("text", { x: pad + i * step + step / 2, y: height + pad + 16, class: "axis",
        "text-anchor": "middle" }, label));
    }
  });
  if (series.length > 1) legend(svg, series, height + pad * 2 + 14);
  return figure(name, title, svg, labels, series);
}

/** Horizontal bars, one row per label (clinics), one bar per series. */
export function barChart(name, title, labels, series) {
  const width = 720;
  const labelWidth = 230;
  const rowHeight = 14 * series.length + 10;
  const top = series.length > 1 ? 24 : 4;
  const height = top + labels.length * rowHeight + 4;
  const max = Math.max(1, ...series.flatMap((s) => s.values.map((v) => v || 0)));
  const rtl = document.documentElement.dir === "rtl";
  // Drawn left to right in both languages; in Arabic the labels sit on the right and
  // the bars grow leftwards, so the chart reads from the same side as the page.
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg", direction: "ltr" });
  if (series.length > 1) legend(svg, series, 14);
  const span = width - labelWidth - 50;
  labels.forEach((label, i) => {
    const y = top + i * rowHeight;
    svg.append(svgEl("text", rtl
      ? { x: width, y: y + rowHeight / 2 + 4, class: "axis", "text-anchor": "end" }
      : { x: 0, y: y + rowHeight / 2 + 4, class: "axis" }, label));
    series.forEach((s, j) => {
      const value = s.values[i] || 0;
      const w = (value / max) * span;
      const x = rtl ? width - labelWidth - w : labelWidth;
      svg.append(svgEl("rect", { x, y: y + 4 + j * 14, width: Math.max(value ? 1 : 0, w), height: 12, class: `bar s${j}` }));
      svg.append(svgEl("text", { x: rtl ? x - 4 : x + w + 4, y: y + 14 + j * 14, class: "axis value",
        "text-anchor": rtl ? "end" : "start" }, format(s.values[i])));
    });
  });
  return figure(name, title, svg, labels, series);
}
