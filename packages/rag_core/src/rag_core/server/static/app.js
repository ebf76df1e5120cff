// The page: connect (token if the server needs one), ask, and mount the plugins' page modules.
//
// A plugin's page module (listed by /health in page_modules) exports mount(page), where page is:
//   page.api(path, {method, body})  JSON request with the token; throws ApiError(message, param)
//   page.blobUrl(path)              a binary response (audio, image) as an object URL
//   page.onAnswer(fn)               fn({question, answer, passages, citations, model}) per answer
//   page.answerActions              element for buttons under the answer ("Make music from this")
//   page.section(title)             a section of the plugin's own below the passages
//   page.showPassage(n)             show passage n, as clicking [n] does
//   page.health                     what /health said

import { api, ApiError, blobUrl, hasToken, setToken, takeTokenFromUrl } from "./api.js";
import { AskView } from "./ask.js";
import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);

function status(text) {
  $("status").textContent = text;
}

function askForToken() {
  return new Promise((resolve) => {
    const form = $("token-form");
    form.hidden = false;
    form.onsubmit = (event) => {
      event.preventDefault();
      setToken($("token").value.trim());
      form.hidden = true;
      resolve();
    };
  });
}

// Until a request with the stored token works: ask for the token when it is missing or wrong.
async function connect(health) {
  if (!health.auth) return;
  for (;;) {
    if (!hasToken()) await askForToken();
    try {
      await api("/api/jobs");
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      setToken(null);
      status("that token was not accepted");
    }
  }
}

function pageFor(health, view) {
  return {
    api, blobUrl, el, health,
    onAnswer: (fn) => view.onAnswer(fn),
    answerActions: $("answer-actions"),
    showPassage: (n) => view.showPassage(n),
    section(title) {
      const section = document.createElement("section");
      section.className = "plugin-section";
      const heading = document.createElement("h2");
      heading.textContent = title;
      section.append(heading);
      $("plugin-sections").append(section);
      return section;
    },
  };
}

async function mountPageModules(health, view) {
  for (const url of health.page_modules) {
    try {
      const module = await import(url);
      await module.mount(pageFor(health, view));
    } catch (err) {
      console.error(`page module ${url} failed`, err);
      status(`a plugin's part of the page failed to load (${url})`);
    }
  }
}

async function main() {
  takeTokenFromUrl();
  const view = new AskView({
    form: $("ask-form"), input: $("question"), button: $("ask"),
    section: $("answer-section"), answer: $("answer"), error: $("answer-error"),
    passagesSection: $("passages-section"), passages: $("passages"),
  });
  try {
    const health = await api("/health");
    await connect(health);
    status(`version ${health.version}`);
    await mountPageModules(health, view);
  } catch (err) {
    status(`cannot reach the server: ${err.message}`);
  }
}

main();
