// Ask: a question to a collection (optionally scoped to chosen documents), the answer streamed
// token by token with [n] citations that open the cited excerpt, cancel, job id and timings.
// The job id is kept in the URL (#/ask?job=<id>): a reload replays the stored events from the
// start and follows the live ones, so a long answer goes on where it was.

import { api, followEvents } from "../api.js";
import { between, clear, dateTime, errorBox, h, seconds, statusBadge, toast } from "../dom.js";
import { t } from "../i18n.js";

export const SCOPE_KEY = "ragserve.scope";

export function readScope() {
  try {
    return JSON.parse(sessionStorage.getItem(SCOPE_KEY) || "null");
  } catch {
    return null;
  }
}

/** Open the cited excerpt (also used by the job page). */
export function openCitation(source, n) {
  const dialog = document.getElementById("citation-dialog");
  document.getElementById("citation-title").textContent = `[${n}] ${source.source}`;
  const location = source.location || {};
  const rows = [
    [t("cite.source"), source.source],
    [t("cite.page"), location.page ?? null],
    [t("cite.section"), location.section?.length ? location.section.join(" › ") : null],
    [t("cite.score"), typeof source.score === "number" ? source.score.toFixed(3) : null],
  ].filter(([, value]) => value !== null && value !== undefined);
  clear(
    document.getElementById("citation-meta"),
    rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]),
  );
  document.getElementById("citation-text").textContent = source.text || "";
  dialog.showModal();
}

/** The answer's text with each [n] that names a source turned into a button opening it. */
export function answerNodes(text, sources) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    const source = sources[n - 1];
    if (!source) continue;
    nodes.push(text.slice(last, match.index));
    nodes.push(
      h(
        "button",
        {
          type: "button",
          class: "cite",
          "aria-label": `${t("ask.citation", { n })}: ${source.source}`,
          onclick: () => openCitation(source, n),
        },
        `[${n}]`,
      ),
    );
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  return nodes;
}

export function sourceList(sources) {
  return h(
    "ol",
    { class: "sources", id: "sources" },
    sources.map((source, i) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "link", onclick: () => openCitation(source, i + 1) },
          `[${i + 1}] ${source.source}`,
          source.location?.page ? ` · ${t("cite.page")} ${source.location.page}` : "",
        ),
      ),
    ),
  );
}

export async function render(main, route) {
  const jobId = route.params.get("job");
  const scope = readScope();

  const collection = h("select", { id: "ask-collection", name: "collection" });
  const question = h("textarea", {
    id: "ask-question",
    name: "query",
    rows: 3,
    required: true,
    placeholder: t("ask.placeholder"),
  });
  const submit = h("button", { type: "submit", class: "primary", id: "ask-submit" }, t("ask.submit"));
  const cancel = h("button", { type: "button", id: "ask-cancel", disabled: true }, t("ask.cancel"));
  const scopeBox = h("div", { class: "scope", id: "ask-scope" });
  const facts = h("dl", { class: "facts", id: "ask-facts" });
  const notice = h("p", { class: "notice", id: "ask-notice", role: "status" });
  const answer = h("div", { class: "answer", id: "answer", "aria-live": "polite", "aria-busy": "false" }, t("ask.no_answer"));
  const sourcesBox = h("section", { "aria-labelledby": "sources-title" });

  const form = h(
    "form",
    { class: "card ask-form", onsubmit: (event) => submitQuestion(event) },
    h("div", { class: "field" }, h("label", { for: "ask-collection" }, t("ask.collection")), collection),
    scopeBox,
    h("div", { class: "field" }, h("label", { for: "ask-question" }, t("ask.question")), question),
    h("div", { class: "actions" }, submit, cancel),
  );
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  main.append(
    h("h1", {}, t("ask.title")),
    form,
    h(
      "section",
      { class: "card", "aria-labelledby": "answer-title" },
      h("h2", { id: "answer-title" }, t("ask.answer")),
      facts,
      notice,
      answer,
      sourcesBox,
    ),
  );

  function showScope() {
    const current = readScope();
    if (!current?.documents?.length) {
      clear(scopeBox);
      collection.disabled = false;
      return;
    }
    collection.value = current.collection;
    collection.disabled = true;
    clear(
      scopeBox,
      h("span", {}, t("ask.scope")),
      current.documents.map((d) => h("span", { class: "chip" }, d.source)),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            sessionStorage.removeItem(SCOPE_KEY);
            showScope();
          },
        },
        t("ask.scope.clear"),
      ),
    );
  }

  async function submitQuestion(event) {
    event.preventDefault();
    const current = readScope();
    const body = { query: question.value, collection: collection.value };
    if (current?.documents?.length) {
      body.collection = current.collection;
      body.document_scope = current.documents.map((d) => d.document_id);
    }
    submit.disabled = true;
    try {
      const accepted = await api("POST", "/v1/jobs", { json: body });
      location.hash = `#/ask?job=${encodeURIComponent(accepted.job_id)}`;
    } catch (error) {
      clear(notice, errorBox(error));
    } finally {
      submit.disabled = false;
    }
  }

  try {
    const listed = await api("GET", "/v1/collections", { signal: route.signal });
    const names = listed.collections.map((c) => c.name);
    if (!names.length) names.push("default");
    if (scope?.collection && !names.includes(scope.collection)) names.push(scope.collection);
    clear(collection, names.map((name) => h("option", { value: name }, name)));
  } catch (error) {
    if (route.signal.aborted) return;
    clear(collection, h("option", { value: "default" }, "default"));
    main.prepend(errorBox(error));
  }
  showScope();
  if (jobId) await follow(jobId);

  async function follow(id) {
    let job;
    try {
      job = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`, { signal: route.signal });
    } catch (error) {
      if (!route.signal.aborted) clear(notice, errorBox(error));
      return;
    }
    question.value = job.query || "";
    if ([...collection.options].some((o) => o.value === job.collection)) collection.value = job.collection;

    let text = "";
    let sources = [];
    let status = job.status;
    const showAnswer = () => {
      clear(answer, text ? answerNodes(text, sources) : t("ask.waiting"));
      clear(sourcesBox, sources.length ? [h("h3", { id: "sources-title" }, t("ask.sources")), sourceList(sources)] : []);
    };
    const showFacts = (timings = {}) => {
      const rows = [
        ["job", t("ask.job"), h("a", { href: `#/jobs/${job.job_id}`, id: "ask-job-id" }, job.job_id)],
        ["status", t("ask.status"), statusBadge(status)],
        ["created", t("jobs.created"), dateTime(job.created_at)],
        ["queue_wait", t("ask.queue_wait"), seconds(timings.wait ?? null)],
        ["first_token", t("ask.first_token"), seconds(timings.firstToken ?? null)],
        ["duration", t("ask.duration"), seconds(timings.total ?? null)],
      ];
      clear(facts, rows.map(([key, name, value]) => h("div", { "data-fact": key }, h("dt", {}, name), h("dd", {}, value))));
      facts.dataset.status = status;
    };
    const showTimings = async () => {
      try {
        const timeline = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/timeline`, { signal: route.signal });
        job = timeline.job;
        const tokens = timeline.tokens.at(-1);
        showFacts({
          wait: between(job.created_at, job.started_at),
          firstToken: tokens ? between(job.created_at, tokens.first_at) : null,
          total: between(job.created_at, job.finished_at),
        });
      } catch {
        // timings are a nicety: the answer is shown already
      }
    };

    showFacts();
    showAnswer();
    answer.setAttribute("aria-busy", "true");
    cancel.disabled = false;
    const onCancel = async () => {
      cancel.disabled = true;
      try {
        await api("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
      } catch (error) {
        toast(error.message);
      }
    };
    cancel.addEventListener("click", onCancel);

    try {
      await followEvents(id, {
        signal: route.signal,
        onState: (state) => {
          notice.textContent = state === "reconnecting" ? t("ask.reconnecting") : "";
        },
        onEvent: ({ type, data }) => {
          if (type === "status") {
            status = data.status;
            if (status === "running") text = ""; // a new attempt streams the answer anew
            if (status === "cancelled") notice.textContent = t("ask.cancelled");
            showFacts();
          } else if (type === "sources") {
            sources = data.sources || [];
          } else if (type === "token") {
            text += data.text;
          } else if (type === "done") {
            status = "succeeded";
            text = data.result?.answer ?? text;
            sources = data.result?.sources ?? sources;
            showFacts();
          } else if (type === "error") {
            status = "failed";
            clear(notice, h("span", { class: "error" }, t("ask.failed", { message: data.message })));
            showFacts();
          }
          showAnswer();
        },
      });
    } catch (error) {
      if (!route.signal.aborted) clear(notice, errorBox(error));
    }
    if (route.signal.aborted) return;
    answer.setAttribute("aria-busy", "false");
    cancel.disabled = true;
    cancel.removeEventListener("click", onCancel);
    await showTimings();
  }
}
