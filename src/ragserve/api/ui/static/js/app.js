// The console's shell: hash routes (#/ask, #/documents, #/jobs, #/jobs/<id>, #/ops), the
// language switch and the key button. Each page module exports render(main, route), which
// gets route.signal, aborted when the user leaves the page (streams and timers stop).

import { apiKey, forgetKey } from "./api.js";
import { language, setLanguage, translateStatic } from "./i18n.js";
import * as ask from "./pages/ask.js";
import * as documents from "./pages/documents.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as ops from "./pages/ops.js";

const PAGES = { ask, documents, jobs, job, ops };

/** "#/jobs/abc?x=1" -> {page: "job", id: "abc", params: URLSearchParams} */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: decodeURIComponent(parts[1]), params };
  return { page: PAGES[parts[0]] ? parts[0] : "ask", params };
}

let controller = null;

function show() {
  controller?.abort();
  controller = new AbortController();
  const route = { ...parseHash(), signal: controller.signal };
  const navPage = route.page === "job" ? "jobs" : route.page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === navPage) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  PAGES[route.page].render(main, route);
}

function showKeyButton() {
  document.getElementById("forget-key").hidden = !apiKey();
}

function start() {
  translateStatic();
  const select = document.getElementById("lang");
  select.value = language();
  select.addEventListener("change", () => {
    setLanguage(select.value);
    translateStatic();
    show();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    forgetKey();
    show();
  });
  // The skip link must not change the hash (the hash is the route).
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  document.addEventListener("ragserve:key", showKeyButton);
  showKeyButton();
  window.addEventListener("hashchange", () => {
    show();
    document.getElementById("main").focus({ preventScroll: true });
  });
  if (!location.hash) history.replaceState(null, "", "#/ask");
  show();
}

start();
