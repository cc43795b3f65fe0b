// Jobs: a live table (refreshed every 2 s on the newest page) with status and kind filters and
// keyset paging (?before=<the last job's id>). Filters live in the URL.

import { api } from "../api.js";
import { clear, dateTime, errorBox, focusInTable, h, seconds, shortId, statusBadge, table } from "../dom.js";
import { label, t } from "../i18n.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const KINDS = ["answer", "ingest", "app"];
const PAGE_SIZE = 25;
const REFRESH_MS = 2000;

function hashWith(params) {
  const query = new URLSearchParams([...params].filter(([, v]) => v)).toString();
  return `#/jobs${query ? `?${query}` : ""}`;
}

function select(id, label, values, current, prefix) {
  return h(
    "div",
    { class: "field inline" },
    h("label", { for: id }, label),
    h(
      "select",
      { id },
      h("option", { value: "" }, t("jobs.any")),
      values.map((v) => h("option", { value: v, selected: v === current }, t(`${prefix}.${v}`))),
    ),
  );
}

/** A job's kind, with its app for app jobs ("app · spell"; answer jobs are the app rag). */
export function kindLabel(job) {
  const kind = label("kind", job.kind);
  return job.kind === "app" && job.app ? [kind, " · ", h("code", { class: "app-name" }, job.app)] : kind;
}

/** What a job is about: its question, the collection of an ingest job, else its app. */
export function jobSubject(job) {
  return job.query ?? (job.collection || job.app || t("common.none"));
}

export function jobRow(job) {
  return h(
    "tr",
    { "data-job": job.job_id, "data-status": job.status },
    h("td", { class: "mono" }, h("a", { href: `#/jobs/${job.job_id}`, title: job.job_id }, shortId(job.job_id))),
    h("td", { "data-field": "kind" }, kindLabel(job)),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "wrap" }, jobSubject(job)),
    h("td", { class: "num" }, String(job.attempts)),
    h("td", { class: "num" }, seconds(job.queue_wait_s)),
    h("td", { class: "num" }, seconds(job.duration_s)),
    h("td", { class: "mono" }, job.version ?? t("common.none")),
    h("td", { class: "mono" }, job.worker_host ? `${job.worker_host}:${job.worker_pid}` : shortId(job.worker_id)),
    h("td", {}, dateTime(job.created_at)),
  );
}

export async function render(main, route) {
  const params = route.params;
  const status = params.get("status") || "";
  const kind = params.get("kind") || "";
  const before = params.get("before") || "";
  const live = h("input", { type: "checkbox", id: "jobs-live", checked: !before, disabled: !!before });
  const filters = h(
    "form",
    { class: "filters", onsubmit: (event) => event.preventDefault() },
    select("jobs-status", t("jobs.status"), STATUSES, status, "status"),
    select("jobs-kind", t("jobs.kind"), KINDS, kind, "kind"),
    h("div", { class: "field inline" }, live, h("label", { for: "jobs-live" }, t("common.live"))),
  );
  for (const id of ["jobs-status", "jobs-kind"]) {
    filters.querySelector(`#${id}`).addEventListener("change", () => {
      location.hash = hashWith([
        ["status", filters.querySelector("#jobs-status").value],
        ["kind", filters.querySelector("#jobs-kind").value],
      ]);
    });
  }
  const box = h("div", { id: "jobs-box" }, t("common.loading"));
  const pager = h("div", { class: "actions pager" });
  main.append(h("h1", {}, t("jobs.title")), h("section", { class: "card" }, filters, box, pager));

  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (status) query.set("status", status);
  if (kind) query.set("kind", kind);
  if (before) query.set("before", before);

  async function load() {
    try {
      const page = await api("GET", `/v1/jobs?${query}`, { signal: route.signal });
      const headers = [t("jobs.job"), t("jobs.kind"), t("jobs.status"), t("jobs.what"), t("jobs.attempts"), t("jobs.queue_wait"), t("jobs.duration"), t("jobs.version"), t("jobs.worker"), t("jobs.created")];
      clear(box, page.jobs.length ? table(t("jobs.title"), headers, page.jobs.map(jobRow), { id: "jobs-table" }) : h("p", {}, t("jobs.empty")));
      clear(
        pager,
        before ? h("a", { class: "button", href: hashWith([["status", status], ["kind", kind]]) }, t("jobs.newer")) : null,
        page.jobs.length === PAGE_SIZE
          ? h("a", { class: "button", id: "jobs-older", href: hashWith([["status", status], ["kind", kind], ["before", page.jobs.at(-1).job_id]]) }, t("jobs.older"))
          : null,
      );
    } catch (error) {
      if (!route.signal.aborted) clear(box, errorBox(error));
    }
  }

  await load();
  const timer = setInterval(() => {
    if (live.checked && !document.hidden && !focusInTable()) load();
  }, REFRESH_MS);
  route.signal.addEventListener("abort", () => clearInterval(timer));
}
