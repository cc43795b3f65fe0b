// Two small SVG charts drawn from per-minute buckets: stacked bars and lines. No library.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 180;
const PAD = { left: 40, right: 8, top: 10, bottom: 22 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function frame(label, minutes, max, format) {
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart" });
  const grid = [0, 0.5, 1].map((f) => {
    const y = PAD.top + innerH * (1 - f);
    return [
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: PAD.left - 4, y: y + 4, "text-anchor": "end", class: "tick" }, document.createTextNode(format(max * f))),
    ];
  });
  const ticks = minutes.map((minute, i) => {
    if (i % 10 !== 0 && i !== minutes.length - 1) return null;
    const x = PAD.left + (innerW * (i + 0.5)) / minutes.length;
    const text = new Date(minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    const anchor = i === minutes.length - 1 ? "end" : i === 0 ? "start" : "middle";
    return svg("text", { x, y: HEIGHT - 6, "text-anchor": anchor, class: "tick" }, document.createTextNode(text));
  });
  root.append(...grid.flat(), ...ticks.filter(Boolean));
  return { root, innerW, innerH };
}

function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map((s) => h("li", {}, h("span", { class: `swatch ${s.className}`, "aria-hidden": "true" }), s.label)),
  );
}

/** Stacked bars per bucket; series: [{key, label, className}]. */
export function stackedBars(label, buckets, series) {
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + (b[s.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const { root, innerW, innerH } = frame(label, buckets.map((b) => b.minute), max, (v) => String(Math.round(v)));
  const barW = innerW / Math.max(1, buckets.length);
  buckets.forEach((bucket, i) => {
    let base = 0;
    for (const s of series) {
      const value = bucket[s.key] || 0;
      if (!value) continue;
      const height = (innerH * value) / max;
      const y = PAD.top + innerH - ((innerH * base) / max) - height;
      const rect = svg("rect", { x: PAD.left + i * barW + 1, y, width: Math.max(1, barW - 2), height, class: s.className });
      rect.append(svg("title", {}, document.createTextNode(`${s.label}: ${value}`)));
      root.append(rect);
      base += value;
    }
  });
  return h("figure", { class: "chart-box" }, root, legend(series));
}

/** One line per series (gaps where a bucket has no value). */
export function lines(label, buckets, series, format) {
  const values = buckets.flatMap((b) => series.map((s) => b[s.key]).filter((v) => typeof v === "number"));
  const max = niceMax(Math.max(0, ...values));
  const { root, innerW, innerH } = frame(label, buckets.map((b) => b.minute), max, format);
  const step = innerW / Math.max(1, buckets.length);
  for (const s of series) {
    let path = "";
    let pen = false;
    buckets.forEach((bucket, i) => {
      const value = bucket[s.key];
      if (typeof value !== "number") {
        pen = false;
        return;
      }
      const x = PAD.left + step * (i + 0.5);
      const y = PAD.top + innerH - (innerH * value) / max;
      path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      pen = true;
      root.append(svg("circle", { cx: x, cy: y, r: 2.5, class: s.className }));
    });
    if (path) root.append(svg("path", { d: path, class: `line ${s.className}` }));
  }
  return h("figure", { class: "chart-box" }, root, legend(series));
}
