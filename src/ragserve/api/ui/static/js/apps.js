// Apps as the console sees them (GET /v1/apps): which ones are the built-in answer pipeline
// (`rag` and its model classes, declared with `--app NAME=ragserve:rag`), an input prefilled
// from an app's input schema, and an app's output as text.

import { api } from "./api.js";

export const RAG_APP = "rag";

/** The apps of the server; just `rag` from a server that predates apps (no /v1/apps). */
export async function listApps(signal) {
  try {
    const listed = await api("GET", "/v1/apps", { signal });
    if (listed?.apps?.length) return listed.apps;
  } catch (error) {
    if (signal?.aborted || error.status !== 404) throw error;
  }
  return [{ name: RAG_APP, queue: "answer", input_schema: {}, output_schema: {} }];
}

/** Whether an app is an instance of the built-in pipeline: `rag` itself, or an app whose input
 * schema is the one of answer jobs (AnswerRequest: `query` and `collection`). Those take the
 * question form and stream answers with citations. */
export function isPipeline(app) {
  if (!app) return false;
  if (app.name === RAG_APP) return true;
  const schema = app.input_schema || {};
  return schema.title === "AnswerRequest" && Boolean(schema.properties?.query && schema.properties?.collection);
}

/** Whether the app takes plain text (its input schema is a string): then a text box, not JSON. */
export function takesText(app) {
  return app?.input_schema?.type === "string";
}

function resolve(schema, root, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > 8) return {};
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").at(-1);
    return resolve(root.$defs?.[name] ?? root.definitions?.[name] ?? {}, root, depth + 1);
  }
  const options = schema.anyOf || schema.oneOf;
  if (Array.isArray(options)) {
    const first = options.find((o) => o?.type !== "null") ?? options[0];
    return resolve(first, root, depth + 1);
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return resolve(schema.allOf[0], root, depth + 1);
  return schema;
}

/** A value fitting ``schema`` to start editing from: defaults where given, else an empty value
 * of each property's type. */
export function exampleOf(schema, root = schema, depth = 0) {
  const s = resolve(schema, root);
  if ("default" in s) return s.default;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  switch (type) {
    case "string":
      return "";
    case "integer":
    case "number":
      return typeof s.minimum === "number" ? s.minimum : 0;
    case "boolean":
      return false;
    case "array":
      return [];
    case "null":
      return null;
    default: {
      const properties = s.properties || {};
      const value = {};
      if (depth > 6) return value;
      for (const [name, property] of Object.entries(properties)) value[name] = exampleOf(property, root, depth + 1);
      return value;
    }
  }
}

/** The text an input box starts with: the example as JSON, or plain text for a text input. */
export function inputTemplate(app) {
  if (takesText(app)) return "";
  return JSON.stringify(exampleOf(app?.input_schema || {}), null, 2);
}

/** An app's output (or a chunk) as text: a string as it is, anything else as JSON. */
export function outputText(value, pretty = true) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, pretty ? 2 : undefined) ?? "null";
}
