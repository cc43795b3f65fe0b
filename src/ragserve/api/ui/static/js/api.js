// The console's only way to the server: the JSON API, with the API key (when the server asks
// for one) sent as a Bearer header. The key lives in sessionStorage: this tab, this session.
//
// Event streams are read with fetch and a stream parser rather than EventSource, because
// EventSource cannot send an Authorization header; the parser keeps the last event id and
// resumes with Last-Event-ID itself, as EventSource would.

import { t } from "./i18n.js";

const KEY_STORAGE = "ragserve.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  document.dispatchEvent(new CustomEvent("ragserve:key"));
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let pendingPrompt = null;

/** Ask the user for a key (one dialog, however many requests got a 401 meanwhile). */
export function askForKey() {
  if (!pendingPrompt) {
    pendingPrompt = new Promise((resolve, reject) => {
      const dialog = document.getElementById("key-dialog");
      const form = document.getElementById("key-form");
      const input = document.getElementById("key-input");
      const cancel = document.getElementById("key-cancel");
      input.value = "";
      const done = (ok) => {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        pendingPrompt = null;
        ok ? resolve() : reject(new ApiError(401, t("auth.missing")));
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORAGE, key);
        document.dispatchEvent(new CustomEvent("ragserve:key"));
        done(true);
      };
      const onCancel = (event) => {
        event.preventDefault();
        done(false);
      };
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      input.focus();
    });
  }
  return pendingPrompt;
}

/** fetch with the key; on 401, prompt for a key and try again. */
export async function request(method, path, { json, headers = {}, signal } = {}) {
  for (;;) {
    const init = { method, signal, headers: { ...authHeaders(), ...headers } };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    const response = await fetch(path, init);
    if (response.status !== 401) return response;
    await askForKey();
  }
}

/** The message of an error body: ours ({error: {type, message}}) or a validation one. */
export function errorMessage(status, body) {
  if (body?.error?.message) return body.error.message;
  if (Array.isArray(body?.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  if (typeof body?.detail === "string") return body.detail;
  return `HTTP ${status}`;
}

/** A JSON call: the parsed body, or ApiError. */
export async function api(method, path, options = {}) {
  const response = await request(method, path, options);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, body), body);
  return body;
}

/**
 * Upload one file as its own ingest job with XMLHttpRequest (fetch reports no upload
 * progress). onProgress(fraction); resolves with the 202 body, rejects with ApiError.
 */
export function uploadFile(collection, file, onProgress) {
  const send = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/v1/collections/${encodeURIComponent(collection)}/documents`);
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, errorMessage(xhr.status, body), body));
      };
      xhr.onerror = () => reject(new ApiError(0, "network error"));
      const form = new FormData();
      form.append("files", file, file.name);
      xhr.send(form);
    });
  return (async () => {
    for (;;) {
      try {
        return await send();
      } catch (error) {
        if (error.status !== 401) throw error;
        await askForKey();
      }
    }
  })();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function isTerminalEvent(type, data) {
  return type === "done" || type === "error" || (type === "status" && data?.status === "cancelled");
}

/** Parse one SSE frame ("field: value" lines) into {id, event, data, retry}. */
function parseFrame(frame) {
  const out = { data: [] };
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") out.data.push(value);
    else if (field === "id") out.id = value;
    else if (field === "event") out.event = value;
    else if (field === "retry" && /^\d+$/.test(value)) out.retry = Number(value);
  }
  return out;
}

/**
 * Follow a job's events from ``after`` (an event id) until its terminal event, resuming with
 * Last-Event-ID whenever the stream ends early (server restart, network). ``onEvent({id,
 * type, data})`` for each; ``onState("connected" | "reconnecting")``. Stops when ``signal``
 * aborts. Resolves after the terminal event.
 */
export async function followEvents(jobId, { after = 0, onEvent, onState = () => {}, signal }) {
  let last = after;
  let retryMs = 1000;
  while (!signal?.aborted) {
    try {
      const headers = last > 0 ? { "Last-Event-ID": String(last) } : {};
      const response = await request("GET", `/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        headers,
        signal,
      });
      if (response.status >= 400 && response.status < 500) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, errorMessage(response.status, body), body);
      }
      if (response.ok && response.body) {
        onState("connected");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = (buffer + value).replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = parseFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (frame.retry !== undefined) retryMs = frame.retry;
            if (!frame.data.length) continue;
            if (frame.id !== undefined && /^\d+$/.test(frame.id)) last = Number(frame.id);
            const type = frame.event || "message";
            const data = JSON.parse(frame.data.join("\n"));
            onEvent({ id: last, type, data });
            if (isTerminalEvent(type, data)) {
              await reader.cancel().catch(() => {});
              return;
            }
          }
        }
      }
    } catch (error) {
      if (signal?.aborted) return;
      if (error instanceof ApiError) throw error;
    }
    // Ended without the terminal event: resume after the last event seen.
    if (signal?.aborted) return;
    onState("reconnecting");
    await sleep(retryMs);
  }
}
