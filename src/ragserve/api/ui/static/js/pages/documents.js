// Documents: upload several files (drag and drop or the file picker), each as its own ingest
// job with its own progress bar and result; the collection's documents with chunks, metadata
// and ingest time; delete; choose documents to scope a question to.

import { api, uploadFile } from "../api.js";
import { clear, dateTime, errorBox, h, table, toast } from "../dom.js";
import { t } from "../i18n.js";
import { SCOPE_KEY } from "./ask.js";

const COLLECTION_KEY = "ragserve.collection";
const POLL_MS = 300;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForJob(jobId, signal) {
  for (;;) {
    const job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`, { signal });
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    await sleep(POLL_MS);
  }
}

export async function render(main, route) {
  const collection = h("input", {
    id: "docs-collection",
    name: "collection",
    list: "docs-collections",
    value: sessionStorage.getItem(COLLECTION_KEY) || "default",
    autocomplete: "off",
    pattern: "[A-Za-z0-9][A-Za-z0-9_\\-]{0,62}",
    required: true,
  });
  const known = h("datalist", { id: "docs-collections" });
  const picker = h("input", { type: "file", id: "docs-files", multiple: true, class: "visually-hidden" });
  const drop = h(
    "div",
    { class: "drop", id: "docs-drop" },
    h("p", {}, t("docs.drop"), " ", h("label", { for: "docs-files", class: "button", tabindex: "0", id: "docs-choose" }, t("docs.choose"))),
    h("p", { class: "hint" }, t("docs.types")),
    picker,
  );
  const uploads = h("ul", { class: "uploads", id: "docs-uploads", "aria-live": "polite" });
  const listBox = h("section", { class: "card", "aria-labelledby": "docs-list-title" });
  const selected = new Map();

  main.append(
    h("h1", {}, t("docs.title")),
    h(
      "section",
      { class: "card", "aria-labelledby": "docs-upload-title" },
      h("h2", { id: "docs-upload-title" }, t("docs.upload")),
      h("div", { class: "field" }, h("label", { for: "docs-collection" }, t("docs.collection")), collection, known),
      drop,
      uploads,
    ),
    listBox,
  );

  // The label acts as the picker's button: Enter and Space open it from the keyboard too.
  drop.querySelector("label").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      picker.click();
    }
  });
  picker.addEventListener("change", () => {
    uploadAll([...picker.files]);
    picker.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll([...(event.dataTransfer?.files || [])]);
  });
  collection.addEventListener("change", () => {
    if (!collection.checkValidity()) return;
    sessionStorage.setItem(COLLECTION_KEY, collection.value);
    selected.clear();
    loadDocuments();
  });

  function uploadAll(files) {
    if (!collection.reportValidity()) return;
    const name = collection.value;
    sessionStorage.setItem(COLLECTION_KEY, name);
    Promise.all(files.map((file) => uploadOne(name, file))).then(() => {
      if (!route.signal.aborted) loadDocuments();
    });
  }

  async function uploadOne(name, file) {
    const progress = h("progress", { max: 100, value: 0, "aria-label": file.name });
    const state = h("span", { class: "state" }, t("upload.sending", { percent: 0 }));
    const row = h("li", { "data-file": file.name }, h("span", { class: "file" }, file.name), progress, state);
    uploads.append(row);
    const finish = (outcome, text) => {
      row.dataset.outcome = outcome;
      state.textContent = text;
      progress.value = 100;
    };
    try {
      const accepted = await uploadFile(name, file, (fraction) => {
        progress.value = Math.round(fraction * 100);
        state.textContent = t("upload.sending", { percent: Math.round(fraction * 100) });
      });
      state.textContent = t("upload.processing");
      const job = await waitForJob(accepted.job_id, undefined);
      const result = job.result?.documents?.[0];
      if (job.status === "succeeded" && result?.status === "ingested") {
        finish("ingested", t("upload.ingested", { chunks: result.chunks }));
      } else if (job.status === "succeeded" && result?.status === "unchanged") {
        finish("unchanged", t("upload.unchanged"));
      } else {
        const reason = result?.error || job.error?.message || job.status;
        finish("failed", t("upload.failed", { reason }));
      }
    } catch (error) {
      finish("failed", t("upload.failed", { reason: error.message }));
    }
  }

  async function loadDocuments() {
    let name = collection.value;
    let listed;
    try {
      const collections = await api("GET", "/v1/collections", { signal: route.signal });
      clear(known, collections.collections.map((c) => h("option", { value: c.name })));
      const names = collections.collections.map((c) => c.name);
      if (!sessionStorage.getItem(COLLECTION_KEY) && names.length && !names.includes(collection.value)) {
        collection.value = names[0]; // nothing chosen yet: show the first collection there is
        name = names[0];
      }
      if (!collections.collections.some((c) => c.name === name)) {
        clear(listBox, h("h2", { id: "docs-list-title" }, t("docs.list", { collection: name })), h("p", {}, t("docs.empty")));
        return;
      }
      listed = await api("GET", `/v1/collections/${encodeURIComponent(name)}/documents`, { signal: route.signal });
    } catch (error) {
      if (!route.signal.aborted) clear(listBox, errorBox(error));
      return;
    }
    const askButton = h("button", { type: "button", id: "docs-ask", class: "primary", onclick: askSelected });
    const showCount = () => {
      askButton.textContent = t("docs.ask_selected", { n: selected.size });
      askButton.disabled = selected.size === 0;
    };
    const rows = listed.documents.map((doc) =>
      h(
        "tr",
        { "data-source": doc.source },
        h(
          "td",
          {},
          h("input", {
            type: "checkbox",
            "aria-label": t("docs.select", { source: doc.source }),
            checked: selected.has(doc.document_id),
            onchange: (event) => {
              if (event.target.checked) selected.set(doc.document_id, doc.source);
              else selected.delete(doc.document_id);
              showCount();
            },
          }),
        ),
        h("td", { class: "wrap" }, doc.source),
        h("td", { class: "num" }, String(doc.chunks)),
        h("td", { class: "wrap mono" }, Object.keys(doc.metadata || {}).length ? JSON.stringify(doc.metadata) : t("common.none")),
        h("td", {}, dateTime(doc.updated_at)),
        h(
          "td",
          {},
          h(
            "button",
            { type: "button", class: "danger", onclick: () => remove(name, doc), "aria-label": `${t("common.delete")} ${doc.source}` },
            t("common.delete"),
          ),
        ),
      ),
    );
    showCount();
    clear(
      listBox,
      h("h2", { id: "docs-list-title" }, t("docs.list", { collection: name })),
      rows.length
        ? table(t("docs.list", { collection: name }), ["", t("docs.source"), t("docs.chunks"), t("docs.metadata"), t("docs.ingested"), ""], rows, { id: "docs-table" })
        : h("p", {}, t("docs.empty")),
      h("div", { class: "actions" }, askButton),
    );
  }

  async function remove(name, doc) {
    if (!confirm(t("docs.confirm_delete", { source: doc.source }))) return;
    try {
      await api("DELETE", `/v1/collections/${encodeURIComponent(name)}/documents/${encodeURIComponent(doc.document_id)}`);
      selected.delete(doc.document_id);
      toast(t("docs.deleted", { source: doc.source }));
    } catch (error) {
      toast(error.message);
    }
    loadDocuments();
  }

  function askSelected() {
    const documents = [...selected].map(([document_id, source]) => ({ document_id, source }));
    sessionStorage.setItem(SCOPE_KEY, JSON.stringify({ collection: collection.value, documents }));
    location.hash = "#/ask";
  }

  await loadDocuments();
}
