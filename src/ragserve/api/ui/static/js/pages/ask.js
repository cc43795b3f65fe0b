// Ask: pick an app. The built-in pipeline (`rag`, and model classes such as `rag-large`): a
// question to a collection (optionally scoped to chosen documents), the answer streamed token
// by token with [n] citations that open the cited excerpt. Any other app: its input (JSON, or
// text for a string input), its streamed tokens and chunks, then its output. Cancel, job id
// and timings for both. The app and job id are kept in the URL (#/ask?app=<name>&job=<id>): a
// reload replays the stored events from the start and follows the live ones, so a long answer
// goes on where it was.

import { api, followEvents } from "../api.js";
import { RAG_APP, inputTemplate, isPipeline, listApps, outputText, takesText } from "../apps.js";
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

const MAX_CHUNKS_SHOWN = 100;
const INPUT_KEY = "ragserve.appInput";

/** The input of the last app job sent from this tab: {job, text}. */
function readSentInput() {
  try {
    return JSON.parse(sessionStorage.getItem(INPUT_KEY) || "null");
  } catch {
    return null;
  }
}

/** The URL of the Ask page for an app (``rag`` is the default, left out) and a job. */
function askHash(app, jobId) {
  const params = new URLSearchParams();
  if (app && app !== RAG_APP) params.set("app", app);
  if (jobId) params.set("job", jobId);
  const query = params.toString();
  return `#/ask${query ? `?${query}` : ""}`;
}

/** What an app job has streamed so far: its tokens' text, its chunks and, once done, its output. */
function appResultNodes(run) {
  const nodes = [];
  if (run.text) nodes.push(h("h3", {}, t("ask.streamed")), h("div", { id: "app-tokens" }, run.text));
  if (run.chunks.length) {
    const shown = run.chunks.slice(-MAX_CHUNKS_SHOWN);
    nodes.push(
      h("h3", {}, t("ask.chunks", { n: run.chunks.length })),
      run.chunks.length > shown.length ? h("p", { class: "hint" }, t("ask.chunks_more", { n: run.chunks.length - shown.length })) : null,
      h("ol", { id: "app-chunks", class: "chunks", start: run.chunks.length - shown.length + 1 }, shown.map((c) => h("li", {}, outputText(c, false)))),
    );
  }
  if (run.done) nodes.push(h("h3", {}, t("ask.output")), h("pre", { id: "app-output", class: "output" }, outputText(run.output)));
  return nodes.length ? nodes : [t("ask.waiting")];
}

export async function render(main, route) {
  const jobId = route.params.get("job");
  const scope = readScope();
  let apps = [{ name: RAG_APP, input_schema: {} }];
  let app = apps[0];

  const appSelect = h("select", { id: "ask-app", name: "app" });
  const appHint = h("p", { class: "hint", id: "ask-app-hint" });
  const collection = h("select", { id: "ask-collection", name: "collection" });
  const question = h("textarea", {
    id: "ask-question",
    name: "query",
    rows: 3,
    placeholder: t("ask.placeholder"),
  });
  const inputLabel = h("label", { for: "ask-input" });
  const input = h("textarea", { id: "ask-input", name: "input", rows: 5, class: "mono", spellcheck: false });
  const submit = h("button", { type: "submit", class: "primary", id: "ask-submit" }, t("ask.submit"));
  const cancel = h("button", { type: "button", id: "ask-cancel", disabled: true }, t("ask.cancel"));
  const scopeBox = h("div", { class: "scope", id: "ask-scope" });
  const pipelineFields = h(
    "div",
    { id: "ask-pipeline-fields" },
    h("div", { class: "field" }, h("label", { for: "ask-collection" }, t("ask.collection")), collection),
    scopeBox,
    h("div", { class: "field" }, h("label", { for: "ask-question" }, t("ask.question")), question),
  );
  const appFields = h("div", { id: "ask-app-fields", hidden: true }, h("div", { class: "field" }, inputLabel, input));
  const facts = h("dl", { class: "facts", id: "ask-facts" });
  const notice = h("p", { class: "notice", id: "ask-notice", role: "status" });
  const answerTitle = h("h2", { id: "answer-title" }, t("ask.answer"));
  const answer = h("div", { class: "answer", id: "answer", "aria-live": "polite", "aria-busy": "false" }, t("ask.no_answer"));
  const sourcesBox = h("section", { "aria-labelledby": "sources-title" });

  const form = h(
    "form",
    { class: "card ask-form", onsubmit: (event) => submitQuestion(event) },
    h("div", { class: "field" }, h("label", { for: "ask-app" }, t("ask.app")), appSelect, appHint),
    pipelineFields,
    appFields,
    h("div", { class: "actions" }, submit, cancel),
  );
  for (const box of [question, input]) {
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
  }
  main.append(
    h("h1", {}, t("ask.title")),
    form,
    h("section", { class: "card", "aria-labelledby": "answer-title" }, answerTitle, facts, notice, answer, sourcesBox),
  );

  /** Show the form of ``name``: the question for the pipeline, an input box for other apps. */
  function chooseApp(name, { prefill = true } = {}) {
    app = apps.find((a) => a.name === name) ?? apps[0];
    appSelect.value = app.name;
    const pipeline = isPipeline(app);
    pipelineFields.hidden = !pipeline;
    appFields.hidden = pipeline;
    question.required = pipeline;
    clear(appHint, pipeline ? t("ask.app_pipeline") : t("ask.app_queue", { queue: app.queue ?? app.name }));
    if (!pipeline) {
      inputLabel.textContent = takesText(app) ? t("ask.input_text") : t("ask.input_json");
      if (prefill) input.value = inputTemplate(app);
    }
  }

  appSelect.addEventListener("change", () => {
    chooseApp(appSelect.value);
    // The app goes in the address (without reloading the page: the shown job stays).
    history.replaceState(null, "", askHash(app.name, route.params.get("job")));
  });

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

  /** The request for the chosen app: [path, body], or null (the notice says why). */
  function submission() {
    if (isPipeline(app)) {
      const current = readScope();
      const body = { query: question.value, collection: collection.value };
      if (current?.documents?.length) {
        body.collection = current.collection;
        body.document_scope = current.documents.map((d) => d.document_id);
      }
      // `rag` keeps the answer endpoint (and its cache); a model class runs as its own app.
      if (app.name === RAG_APP) return ["/v1/jobs", body];
      return [`/v1/apps/${encodeURIComponent(app.name)}/jobs`, { input: body }];
    }
    let value = input.value;
    if (!takesText(app)) {
      try {
        value = JSON.parse(input.value);
      } catch (error) {
        clear(notice, h("span", { class: "error", role: "alert" }, t("ask.bad_json", { message: error.message })));
        input.focus();
        return null;
      }
    }
    return [`/v1/apps/${encodeURIComponent(app.name)}/jobs`, { input: value }];
  }

  async function submitQuestion(event) {
    event.preventDefault();
    const request = submission();
    if (!request) return;
    submit.disabled = true;
    try {
      const accepted = await api("POST", request[0], { json: request[1] });
      // The API does not return a job's input: keep what was sent, to show it again.
      sessionStorage.setItem(INPUT_KEY, JSON.stringify({ job: accepted.job_id, text: input.value }));
      location.hash = askHash(app.name, accepted.job_id);
    } catch (error) {
      clear(notice, errorBox(error));
    } finally {
      submit.disabled = false;
    }
  }

  try {
    const [listedApps, listed] = await Promise.all([
      listApps(route.signal),
      api("GET", "/v1/collections", { signal: route.signal }),
    ]);
    apps = listedApps;
    const names = listed.collections.map((c) => c.name);
    if (!names.length) names.push("default");
    if (scope?.collection && !names.includes(scope.collection)) names.push(scope.collection);
    clear(collection, names.map((name) => h("option", { value: name }, name)));
  } catch (error) {
    if (route.signal.aborted) return;
    clear(collection, h("option", { value: "default" }, "default"));
    main.prepend(errorBox(error));
  }
  clear(appSelect, apps.map((a) => h("option", { value: a.name }, a.name)));
  chooseApp(route.params.get("app") || RAG_APP);
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
    const jobApp = job.kind === "answer" ? RAG_APP : job.app;
    const listedApp = apps.find((a) => a.name === jobApp);
    // An app no longer served still shows: a job with a question is one of the pipeline's.
    const pipeline = job.kind === "answer" || (listedApp ? isPipeline(listedApp) : job.query !== null);
    if (listedApp) chooseApp(listedApp.name, { prefill: !pipeline });
    const sent = readSentInput();
    if (!pipeline && sent?.job === job.job_id) input.value = sent.text;
    if (pipeline) {
      question.value = job.query || "";
      if ([...collection.options].some((o) => o.value === job.collection)) collection.value = job.collection;
    }
    answerTitle.textContent = pipeline ? t("ask.answer") : t("ask.output");
    answer.classList.toggle("app-result", !pipeline);

    let text = "";
    let sources = [];
    let status = job.status;
    const run = { text: "", chunks: [], output: null, done: false };
    const showAnswer = () => {
      if (!pipeline) {
        clear(answer, appResultNodes(run));
        return;
      }
      clear(answer, text ? answerNodes(text, sources) : t("ask.waiting"));
      clear(sourcesBox, sources.length ? [h("h3", { id: "sources-title" }, t("ask.sources")), sourceList(sources)] : []);
    };
    const showFacts = (timings = {}) => {
      const rows = [
        ["job", t("ask.job"), h("a", { href: `#/jobs/${job.job_id}`, id: "ask-job-id" }, job.job_id)],
        ["app", t("ask.app"), jobApp ?? t("common.none")],
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
            if (status === "running") {
              // a new attempt streams anew
              text = "";
              Object.assign(run, { text: "", chunks: [] });
            }
            if (status === "cancelled") notice.textContent = t("ask.cancelled");
            showFacts();
          } else if (type === "sources") {
            sources = data.sources || [];
          } else if (type === "token") {
            text += data.text;
            run.text += data.text;
          } else if (type === "chunk") {
            run.chunks.push(data.chunk);
          } else if (type === "done") {
            status = "succeeded";
            // an answer job's result is {answer, sources}; an app job's {output: ...}
            const result = data.result && "output" in data.result ? data.result.output : data.result;
            Object.assign(run, { output: result, done: true });
            text = result?.answer ?? text;
            sources = result?.sources ?? sources;
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
