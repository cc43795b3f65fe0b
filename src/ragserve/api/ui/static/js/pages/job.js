// One job: its details, attempts, event timeline (status changes, attempts, errors, sources,
// tokens summed up, the answer), and retry / cancel. Refreshed while the job is not finished.

import { api } from "../api.js";
import { between, clear, dateTime, errorBox, h, seconds, statusBadge, table, toast } from "../dom.js";
import { label, t } from "../i18n.js";
import { outputText } from "../apps.js";
import { answerNodes, sourceList } from "./ask.js";
import { kindLabel } from "./jobs.js";

const REFRESH_MS = 1500;
const TERMINAL = ["succeeded", "failed", "cancelled"];

function eventText(event) {
  const data = event.data || {};
  switch (event.type) {
    case "status": {
      const parts = [t("job.status_event", { status: label("status", data.status) })];
      if (data.attempt) parts.push(`${t("job.attempt")} ${data.attempt}`);
      if (data.version) parts.push(data.version);
      if (data.error?.message) parts.push(`${data.error.type}: ${data.error.message}`);
      return parts.join(" · ");
    }
    case "sources":
      return t("job.sources", { n: (data.sources || []).length, names: (data.sources || []).map((s) => s.source).join(", ") });
    case "done":
      return data.cached ? `${t("job.done")} · ${t("job.cached")}` : t("job.done");
    case "error":
      return `${data.type}: ${data.message}`;
    case "chunk":
      return outputText(data.chunk, false);
    default:
      return JSON.stringify(data);
  }
}

const CHUNKS_LISTED = 20;

/** The events as timeline items; an attempt that streamed more than CHUNKS_LISTED chunks has
 * them summed up in one item (a chain ending in a text parser streams one per token). */
function eventItems(events) {
  const chunksPerAttempt = new Map();
  for (const e of events) if (e.type === "chunk") chunksPerAttempt.set(e.attempt, [...(chunksPerAttempt.get(e.attempt) || []), e]);
  const items = [];
  for (const e of events) {
    const chunks = e.type === "chunk" ? chunksPerAttempt.get(e.attempt) : null;
    if (chunks && chunks.length > CHUNKS_LISTED) {
      if (chunks[0] !== e) continue;
      const text = t("job.chunks", { n: chunks.length, attempt: e.attempt, last: seconds(between(e.created_at, chunks.at(-1).created_at)) });
      items.push({ at: e.created_at, seq: e.seq, type: e.type, text });
    } else {
      items.push({ at: e.created_at, seq: e.seq, type: e.type, text: eventText(e) });
    }
  }
  return items;
}

function timelineItems(timeline) {
  const items = eventItems(timeline.events);
  for (const tokens of timeline.tokens) {
    items.push({
      at: tokens.first_at,
      seq: Infinity,
      type: "token",
      text: t("job.tokens", { n: tokens.tokens, attempt: tokens.attempt, last: seconds(between(tokens.first_at, tokens.last_at)) }),
    });
  }
  return items.sort((a, b) => new Date(a.at) - new Date(b.at) || a.seq - b.seq);
}

function resultView(job) {
  if (job.error) return h("p", { class: "error" }, `${job.error.type}: ${job.error.message}`);
  if (!job.result) return null;
  if (job.kind === "ingest") {
    return table(
      t("job.documents"),
      [t("docs.source"), t("jobs.status"), t("docs.chunks"), t("job.error")],
      (job.result.documents || []).map((d) => [d.source, label("doc", d.status), String(d.chunks), d.error ?? t("common.none")]),
    );
  }
  // An app job's result is {output}; that of an instance of the built-in pipeline (and of an
  // answer job) is an answer with its sources.
  const answer = job.kind === "app" ? job.result.output : job.result;
  if (typeof answer?.answer !== "string" || !Array.isArray(answer.sources)) {
    return h("pre", { class: "output", id: "job-output" }, outputText(job.result.output));
  }
  return h("div", {}, h("div", { class: "answer" }, answerNodes(answer.answer, answer.sources)), sourceList(answer.sources));
}

export async function render(main, route) {
  const id = route.id;
  const heading = h("h1", { class: "mono-title" }, t("job.title", { id }));
  const actions = h("div", { class: "actions" });
  const body = h("div", {}, t("common.loading"));
  main.append(h("p", {}, h("a", { href: "#/jobs" }, `← ${t("job.back")}`)), heading, actions, body);

  async function act(path) {
    try {
      await api("POST", `/v1/jobs/${encodeURIComponent(id)}/${path}`);
    } catch (error) {
      toast(error.message);
    }
    load();
  }

  let timer = null;
  async function load() {
    let timeline;
    try {
      timeline = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/timeline`, { signal: route.signal });
    } catch (error) {
      if (!route.signal.aborted) clear(body, errorBox(error));
      return;
    }
    const job = timeline.job;
    const terminal = TERMINAL.includes(job.status);
    clear(
      actions,
      statusBadge(job.status),
      terminal ? null : h("button", { type: "button", id: "job-cancel", class: "danger", onclick: () => act("cancel") }, t("job.cancel")),
      job.status === "failed" || job.status === "cancelled"
        ? h("button", { type: "button", id: "job-retry", class: "primary", onclick: () => act("retry") }, t("job.retry"))
        : null,
    );
    const details = [
      [t("jobs.kind"), kindLabel(job)],
      [t("job.app"), job.app ?? t("common.none")],
      [t("job.collection"), job.collection || t("common.none")],
      [t("job.query"), job.query ?? t("common.none")],
      [t("jobs.attempts"), String(job.attempts)],
      [t("jobs.created"), dateTime(job.created_at)],
      [t("job.started"), dateTime(job.started_at)],
      [t("job.finished"), dateTime(job.finished_at)],
      [t("jobs.queue_wait"), seconds(between(job.created_at, job.started_at))],
      [t("jobs.duration"), seconds(between(job.started_at, job.finished_at))],
      [t("jobs.version"), job.version ?? t("common.none")],
    ];
    clear(
      body,
      h(
        "section",
        { class: "card", "aria-labelledby": "job-details-title" },
        h("h2", { id: "job-details-title" }, t("job.details")),
        h("dl", { class: "facts" }, details.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value)))),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "job-timeline-title" },
        h("h2", { id: "job-timeline-title" }, t("job.timeline")),
        h(
          "ol",
          { class: "timeline", id: "job-timeline" },
          timelineItems(timeline).map((item) =>
            h(
              "li",
              { "data-type": item.type },
              h("time", { datetime: item.at }, `+${seconds(between(job.created_at, item.at))}`),
              h("span", { class: `event event-${item.type}` }, item.type),
              h("span", { class: "wrap" }, item.text),
            ),
          ),
        ),
      ),
      timeline.attempts.length
        ? h(
            "section",
            { class: "card", "aria-labelledby": "job-attempts-title" },
            h("h2", { id: "job-attempts-title" }, t("job.attempts")),
            table(
              t("job.attempts"),
              [t("job.attempt"), t("jobs.version"), t("jobs.worker"), t("job.started"), t("jobs.duration"), t("job.outcome")],
              timeline.attempts.map((a) => [
                String(a.attempt),
                a.version,
                a.worker_host ? `${a.worker_host}:${a.worker_pid}` : a.worker_id.slice(0, 8),
                dateTime(a.started_at),
                seconds(between(a.started_at, a.finished_at)),
                a.outcome ? label("outcome", a.outcome) : t("common.none"),
              ]),
            ),
          )
        : null,
      job.result || job.error
        ? h("section", { class: "card", "aria-labelledby": "job-result-title" }, h("h2", { id: "job-result-title" }, t("job.result")), resultView(job))
        : null,
    );
    clearTimeout(timer);
    if (!terminal && !route.signal.aborted) timer = setTimeout(load, REFRESH_MS);
  }

  route.signal.addEventListener("abort", () => clearTimeout(timer));
  await load();
}
