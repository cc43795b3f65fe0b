// Operations: queue depth and oldest wait per queue, job counts, live workers with the jobs
// they run, throughput and latency over the last hour (from the database), dead letters with
// a re-drive button. Refreshed every 2 s.

import { api } from "../api.js";
import { lines, stackedBars } from "../charts.js";
import { between, clear, dateTime, errorBox, focusInTable, h, seconds, shortId, statusBadge, table, toast } from "../dom.js";
import { t } from "../i18n.js";
import { jobSubject, kindLabel } from "./jobs.js";

const REFRESH_MS = 2000;

export async function render(main, route) {
  const queues = h("section", { class: "card", "aria-labelledby": "ops-queues-title" });
  const workers = h("section", { class: "card", "aria-labelledby": "ops-workers-title" });
  const charts = h("section", { class: "card charts", "aria-labelledby": "ops-charts-title" });
  const dead = h("section", { class: "card", "aria-labelledby": "ops-dead-title" });
  const problem = h("div", {});
  main.append(h("h1", {}, t("ops.title")), problem, h("div", { class: "grid2" }, queues, workers), charts, dead);

  async function redrive(jobId) {
    try {
      await api("POST", `/v1/jobs/${encodeURIComponent(jobId)}/retry`);
      toast(t("ops.redriven", { id: shortId(jobId) }));
    } catch (error) {
      toast(error.message);
    }
    load();
  }

  function showOverview(o) {
    clear(
      queues,
      h("h2", { id: "ops-queues-title" }, t("ops.queues")),
      table(
        t("ops.queues"),
        [t("ops.queue"), t("ops.depth"), t("ops.running"), t("ops.oldest")],
        o.queues.map((q) =>
          h(
            "tr",
            { "data-queue": q.name },
            h("td", {}, q.name),
            h("td", { class: "num", "data-field": "depth" }, String(q.depth)),
            h("td", { class: "num", "data-field": "running" }, String(q.running)),
            h("td", { class: "num", "data-field": "oldest" }, seconds(q.oldest_s)),
          ),
        ),
        { id: "ops-queues" },
      ),
      h("h3", {}, t("ops.statuses")),
      h(
        "ul",
        { class: "tiles", id: "ops-statuses" },
        Object.entries(o.statuses).map(([status, n]) => h("li", { "data-status": status }, statusBadge(status), h("strong", {}, String(n)))),
      ),
    );
    clear(
      workers,
      h("h2", { id: "ops-workers-title" }, t("ops.workers")),
      o.workers.length
        ? table(
            t("ops.workers"),
            [t("ops.worker"), t("ops.version"), t("ops.heartbeat"), t("ops.jobs")],
            o.workers.map((w) => [
              h("div", {}, `${w.host}:${w.pid}`, h("div", { class: "hint" }, `${t("ops.queues")}: ${w.queues.join(", ")}`)),
              w.version,
              t("ops.ago", { s: seconds(between(w.heartbeat_at, o.read_at)) }),
              h(
                "td",
                { class: "wrap-tight" },
                w.jobs.length
                  ? h("ul", { class: "plain" }, w.jobs.map((j) => h("li", {}, h("a", { href: `#/jobs/${j.job_id}` }, shortId(j.job_id)), " ", kindLabel(j))))
                  : String(w.running),
              ),
            ]),
            { id: "ops-workers" },
          )
        : h("p", {}, t("ops.no_workers")),
    );
    clear(
      dead,
      h("h2", { id: "ops-dead-title" }, t("ops.dead")),
      o.dead_letters.length
        ? table(
            t("ops.dead"),
            [t("jobs.job"), t("jobs.what"), t("job.error"), t("job.finished"), ""],
            o.dead_letters.map((j) =>
              h(
                "tr",
                { "data-job": j.job_id },
                h("td", { class: "mono" }, h("a", { href: `#/jobs/${j.job_id}` }, shortId(j.job_id))),
                h("td", { class: "wrap" }, jobSubject(j)),
                h("td", { class: "wrap error" }, j.error ? `${j.error.type}: ${j.error.message}` : t("common.none")),
                h("td", {}, dateTime(j.finished_at)),
                h("td", {}, h("button", { type: "button", onclick: () => redrive(j.job_id) }, t("ops.redrive"))),
              ),
            ),
            { id: "ops-dead" },
          )
        : h("p", {}, t("ops.no_dead")),
    );
  }

  function showThroughput(data) {
    const buckets = data.buckets;
    clear(
      charts,
      h("h2", { id: "ops-charts-title", class: "visually-hidden" }, t("ops.throughput")),
      h(
        "div",
        { class: "grid2" },
        h(
          "div",
          {},
          h("h3", {}, t("ops.throughput")),
          stackedBars(t("ops.throughput"), buckets, [
            { key: "succeeded", label: t("status.succeeded"), className: "s-ok" },
            { key: "failed", label: t("status.failed"), className: "s-bad" },
            { key: "cancelled", label: t("status.cancelled"), className: "s-off" },
          ]),
        ),
        h(
          "div",
          {},
          h("h3", {}, t("ops.latency")),
          lines(
            t("ops.latency"),
            buckets,
            [
              { key: "duration_p50_s", label: t("ops.p50"), className: "s-ok" },
              { key: "duration_p95_s", label: t("ops.p95"), className: "s-warn" },
              { key: "queue_wait_avg_s", label: t("ops.wait"), className: "s-info" },
            ],
            (v) => (v >= 10 ? String(Math.round(v)) : v.toFixed(1)),
          ),
        ),
      ),
    );
  }

  async function load() {
    try {
      const [overview, throughput] = await Promise.all([
        api("GET", "/v1/ops/overview", { signal: route.signal }),
        api("GET", "/v1/ops/throughput?minutes=60", { signal: route.signal }),
      ]);
      clear(problem);
      showOverview(overview);
      showThroughput(throughput);
    } catch (error) {
      if (!route.signal.aborted) clear(problem, errorBox(error));
    }
  }

  await load();
  const timer = setInterval(() => {
    if (!document.hidden && !focusInTable()) load();
  }, REFRESH_MS);
  route.signal.addEventListener("abort", () => clearInterval(timer));
}
