// Small DOM and formatting helpers. Text always goes in as text (never as HTML).

import { label, language, t } from "./i18n.js";

/** h("a", {href: "#"}, "text", child, ...): an element; attributes starting with "on" are
 * listeners; null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A cell: a <td> as it is, anything else wrapped in one. */
function cell(content) {
  return content instanceof Node && content.tagName === "TD" ? content : h("td", {}, content);
}

/** A table: headers (strings) and rows (<tr> nodes, or arrays of cells). */
export function table(caption, headers, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((row) => (row instanceof Node ? row : h("tr", {}, row.map(cell))))),
    ),
  );
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, label("status", status));
}

export function shortId(id) {
  return id ? id.slice(0, 8) : t("common.none");
}

/** Seconds as "850 ms", "4.2 s", "3 min 5 s". */
export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return t("common.none");
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  const minutes = Math.floor(value / 60);
  return `${minutes} min ${Math.round(value - minutes * 60)} s`;
}

export function between(start, end) {
  if (!start || !end) return null;
  return Math.max(0, (new Date(end) - new Date(start)) / 1000);
}

export function dateTime(value) {
  if (!value) return t("common.none");
  return new Date(value).toLocaleString(language() === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "short",
    timeStyle: "medium",
  });
}

let toastTimer = null;

/** A short message in the live region (read out by screen readers). */
export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 4000);
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, t("common.error", { message: error.message }));
}

/** Whether the keyboard focus is in a table: a refresh would then pull it away, so live
 * pages skip their refresh until the focus moves on. */
export function focusInTable() {
  return Boolean(document.activeElement?.closest?.("table"));
}
