// The musicgen plugin's part of the page: "Make music from this" after an answer, the job's
// progress, then the track: a player, its waveform, where it came from, a download; and the
// library of all tracks. Plain JavaScript, no build step; the server serves this file as is.
//
// The API it uses (docs/server.md): POST /api/music, GET /api/jobs/{id}, DELETE /api/jobs/{id},
// GET /api/music/options, GET /api/tracks, GET|DELETE /api/tracks/{id},
// GET /api/tracks/{id}/audio, GET /api/tracks/{id}/waveform.

const POLL_MS = 250;
const STYLE = `
.music-settings { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center;
  font-size: 0.9rem; margin: 0.5rem 0 1rem; }
.music-settings label { display: flex; gap: 0.35rem; align-items: center; }
.music-settings input, .music-settings select { font: inherit; padding: 0.2rem 0.4rem;
  border: 1px solid var(--line); border-radius: 0.35rem; }
.music-settings input[type=number] { width: 6rem; }
.music-job, .track { border: 1px solid var(--line); border-radius: 0.5rem; padding: 0.75rem;
  margin: 0.75rem 0; }
.music-job progress { width: 100%; height: 0.75rem; }
.music-job .row, .track .row { display: flex; gap: 0.5rem; align-items: center;
  flex-wrap: wrap; }
.track h3 { font-size: 1rem; margin: 0 0 0.5rem; }
.track audio { width: 100%; margin: 0.5rem 0; }
.track canvas.waveform { width: 100%; height: 80px; display: block; cursor: pointer;
  background: #f5f5f7; border-radius: 0.35rem; }
.untrained { background: #fff0d6; color: #7a4b00; border-radius: 0.35rem; padding: 0.1rem 0.4rem;
  font-size: 0.8rem; font-weight: 600; }
.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 0.75rem;
  font-size: 0.85rem; margin: 0.5rem 0; }
.provenance dt { color: var(--muted); }
.provenance dd { margin: 0; overflow-wrap: anywhere; }
.provenance pre { white-space: pre-wrap; margin: 0.25rem 0; font-size: 0.8rem; }
button.link { padding: 0; border: none; background: none; color: var(--accent); cursor: pointer;
  font: inherit; text-align: left; }
#track-library .track { padding: 0.5rem 0.75rem; }
`;

let el; // the page's element builder (page.el), set by mount

function addStyle() {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(STYLE);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (value) => (value == null ? "?" : `${Number(value).toFixed(1)} s`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "?");

// A text that may be long: its start, and the whole of it on a click.
function longText(text, limit = 160) {
  if (text.length <= limit) return text;
  return el("details", {}, el("summary", { textContent: `${text.slice(0, limit)}…` }), text);
}

// ---- settings -------------------------------------------------------------------------------

class Settings {
  constructor(options) {
    const defaults = Object.fromEntries(options.fields.map((f) => [f.name, f.default]));
    this.model = el("select", { name: "model" },
      ...options.models.map((m) => el("option", { value: m.id, textContent: m.id,
                                                   title: m.description })));
    if (!options.models.some((m) => m.id === options.default_model)) {
      this.model.append(el("option", { value: options.default_model,
                                       textContent: options.default_model }));
    }
    this.model.value = options.default_model;
    this.duration = el("input", { type: "number", name: "duration", min: "0.1", step: "0.5",
                                  value: defaults.duration ?? 8 });
    this.seed = el("input", { type: "number", name: "seed", min: "0", step: "1",
                              placeholder: "random" });
    this.element = el("div", { className: "music-settings" },
      el("label", {}, "model", this.model),
      el("label", {}, "seconds", this.duration),
      el("label", {}, "seed", this.seed));
  }

  // The request's options; an empty seed is a random one (recorded in the sidecar).
  values() {
    const values = { model: this.model.value, duration: Number(this.duration.value) };
    if (this.seed.value !== "") values.seed = Number(this.seed.value);
    return values;
  }
}

// ---- one track: player, waveform, provenance, download -----------------------------------------

function drawWaveform(canvas, wave, position = 0) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  const mid = height / 2;
  const step = width / wave.points;
  const color = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
  for (let i = 0; i < wave.points; i++) {
    const x = i * step;
    const played = x / width < position;
    g.fillStyle = played ? color || "#0a5bd3" : "#8e8e93";
    const top = mid - wave.max[i] * mid;
    const bottom = mid - wave.min[i] * mid;
    g.fillRect(x, top, Math.max(step, 1), Math.max(bottom - top, 1));
    g.fillStyle = played ? "#003a8c" : "#48484a";
    const rms = wave.rms[i] * mid;
    g.fillRect(x, mid - rms, Math.max(step, 1), Math.max(2 * rms, 1));
  }
}

function describeSource(sidecar) {
  const source = sidecar?.prompt_source || {};
  const how = { given: "as given", extract: "extracted from the cues",
                llm: `described by ${source.llm}` }[source.builder] || source.builder || "?";
  const what = { answer: "the answer", retrieved: "the retrieved passages",
                 question: "the question", text: "a text", prompt: "the prompt" }[source.input];
  return `${what || source.input || "?"} (${how})`;
}

class TrackView {
  // track: a record from /api/tracks; context: the answer shown on the page (or null).
  constructor(page, track, { context = null, onRemoved = null, open = false } = {}) {
    this.page = page;
    this.track = track;
    this.context = context;
    this.audioUrl = null;
    this.audio = el("audio", { className: "track-audio", controls: true, preload: "auto",
                               hidden: true });
    this.canvas = el("canvas", { className: "waveform", title: "click to seek" });
    this.details = el("div", { hidden: !open });
    const untrained = track.untrained
      ? el("span", { className: "untrained", textContent: "UNTRAINED",
                     title: track.notice || "made by an untrained checkpoint" }) : null;
    const actions = el("div", { className: "row" },
      el("button", { type: "button", className: "secondary play", textContent: "Play",
                     onclick: () => this.play() }),
      el("button", { type: "button", className: "secondary download", textContent: "Download",
                     onclick: () => this.download() }),
      el("button", { type: "button", className: "secondary", textContent: "Where from",
                     onclick: () => { this.details.hidden = !this.details.hidden; } }),
      onRemoved ? el("button", { type: "button", className: "secondary remove",
                                 textContent: "Delete", onclick: () => this.remove(onRemoved) })
        : null,
      el("span", { className: "muted", textContent:
        `${seconds(track.duration)} · ${track.model || "?"} · ${when(track.created || track.modified)}`
      }),
      untrained);
    this.element = el("div", { className: "track", dataset: { trackId: track.id } },
      el("h3", { textContent: track.prompt || track.file }),
      this.canvas, this.audio, actions, this.details);
    this.details.append(this.provenance());
    this.audio.addEventListener("timeupdate", () => this.redraw());
    this.canvas.addEventListener("click", (event) => this.seek(event));
  }

  async load() {
    if (!this.audioUrl) {
      const url = await this.page.blobUrl(this.track.audio);
      if (this.disposed) {  // dropped while the audio was fetched
        URL.revokeObjectURL(url);
        return;
      }
      this.audioUrl = url;
      this.audio.src = this.audioUrl;
      this.audio.hidden = false;
    }
  }

  // Stop the player and free its audio (a blob URL holds the file until it is revoked).
  dispose() {
    this.disposed = true;
    this.audio.pause();
    if (this.audioUrl) URL.revokeObjectURL(this.audioUrl);
    this.audioUrl = null;
  }

  async showWaveform() {
    const points = Math.min(2048, Math.max(64, Math.round(this.canvas.clientWidth || 600)));
    this.wave = await this.page.api(`${this.track.waveform}?points=${points}`);
    this.redraw();
  }

  redraw() {
    if (!this.wave) return;
    const position = this.audio.duration ? this.audio.currentTime / this.audio.duration : 0;
    drawWaveform(this.canvas, this.wave, position);
  }

  async seek(event) {
    await this.load();
    const box = this.canvas.getBoundingClientRect();
    const fraction = (event.clientX - box.left) / box.width;
    const go = () => { this.audio.currentTime = fraction * this.audio.duration; this.redraw(); };
    if (this.audio.readyState >= 1) go();
    else this.audio.addEventListener("loadedmetadata", go, { once: true });
  }

  async play() {
    await this.load();
    await this.audio.play();
  }

  async download() {
    await this.load();
    el("a", { href: this.audioUrl, download: this.track.id }).click();
  }

  async remove(onRemoved) {
    if (!window.confirm(`Delete ${this.track.id} and its sidecar?`)) return;
    await this.page.api(`/api/tracks/${encodeURIComponent(this.track.id)}`, { method: "DELETE" });
    this.dispose();
    this.element.remove();
    onRemoved(this.track);
  }

  // Prompt, where it came from (with the passages), model, seed, options, label, notes.
  provenance() {
    const sidecar = this.track.sidecar || {};
    const rag = sidecar.rag || {};
    const list = el("dl", { className: "provenance" });
    const add = (term, ...value) => list.append(el("dt", { textContent: term }),
                                                el("dd", {}, ...value));
    add("prompt", sidecar.prompt || this.track.prompt || "-");
    add("from", describeSource(sidecar));
    if (rag.question) add("question", rag.question);
    if (rag.answer) add("answer", longText(rag.answer));
    const passages = rag.passages || [];
    if (passages.length) add("passages", ...passages.map((p) => this.passageLink(p)));
    else if ((sidecar.prompt_source?.sources || []).length) {
      add("sources", sidecar.prompt_source.sources.join(", "));
    }
    add("model", `${sidecar.model || this.track.model || "?"}`
                 + (sidecar.quantize ? ` (${sidecar.quantize}-bit decoder)` : ""));
    add("seed", String(sidecar.seed ?? this.track.seed ?? "?"));
    const options = Object.entries(sidecar.parameters || {}).map(([k, v]) => `${k} ${v}`);
    if (options.length) add("options", options.join(" · "));
    add("file", `${this.track.file} (${seconds(this.track.duration)}, `
                + `${this.track.sample_rate} Hz, ${this.track.channels === 2 ? "stereo" : "mono"})`);
    if (this.track.untrained) {
      add("label", el("span", { className: "untrained", textContent: "UNTRAINED" }), " ",
          this.track.notice || "");
    }
    for (const note of sidecar.prompt_source?.notes || []) add("note", note);
    if (sidecar.reproduce) add("again", el("code", { textContent: sidecar.reproduce }));
    return list;
  }

  // A passage: shown on the page when it belongs to the answer on screen, else its text here.
  passageLink(passage) {
    const [start, end] = passage.lines || [];
    const where = `[${passage.number ?? "?"}] ${passage.source || "?"}`
                  + (start ? `:${start === end ? start : `${start}-${end}`}` : "");
    const text = el("pre", { textContent: passage.text || "", hidden: true });
    const onScreen = () => this.context?.passages?.find(
      (p) => p.number === passage.number && p.id === passage.id);
    const link = el("button", { type: "button", className: "link passage-link",
                                textContent: where, onclick: () => {
      if (onScreen()) this.page.showPassage(passage.number);
      else text.hidden = !text.hidden;
    } });
    return el("div", {}, link, text);
  }
}

// ---- a music job: progress, then the track ---------------------------------------------------

class JobView {
  constructor(page, title) {
    this.page = page;
    this.bar = el("progress", { className: "music-progress", max: 1, value: 0 });
    this.status = el("span", { className: "muted job-status", textContent: "queued" });
    this.cancel = el("button", { type: "button", className: "secondary", textContent: "Cancel",
                                 onclick: () => this.stop() });
    this.element = el("div", { className: "music-job" },
      el("div", { className: "row" }, el("strong", { textContent: title }), this.status,
         this.cancel),
      this.bar);
  }

  async stop() {
    this.cancel.disabled = true;
    if (this.id) await this.page.api(`/api/jobs/${this.id}`, { method: "DELETE" });
  }

  // Submit, then follow the job until it has finished; returns the finished job.
  async run(body) {
    const job = await this.page.api("/api/music", { method: "POST", body });
    this.id = job.id;
    for (;;) {
      const now = await this.page.api(`/api/jobs/${this.id}`);
      this.bar.value = now.progress;
      this.status.textContent = now.status === "running"
        ? (now.progress > 0 ? `generating ${Math.round(now.progress * 100)} %`
                            : "loading the model, building the prompt")
        : now.status;
      if (["done", "failed", "cancelled"].includes(now.status)) {
        this.cancel.hidden = true;
        if (now.status === "failed") this.status.textContent = `failed: ${now.error}`;
        this.status.classList.toggle("error", now.status === "failed");
        return now;
      }
      await sleep(POLL_MS);
    }
  }
}

// ---- the library --------------------------------------------------------------------------------

class Library {
  constructor(page, section) {
    this.page = page;
    this.list = el("div", { id: "track-library" });
    this.empty = el("p", { className: "muted", textContent: "No tracks yet." });
    section.append(
      el("div", { className: "row" },
        el("button", { type: "button", className: "secondary", textContent: "Refresh",
                       onclick: () => this.refresh() })),
      this.empty, this.list);
  }

  async refresh() {
    const { tracks } = await this.page.api("/api/tracks");
    this.empty.hidden = tracks.length > 0;
    const views = tracks.map((t) => new TrackView(this.page, t, {
      onRemoved: () => { this.empty.hidden = this.list.children.length > 0; } }));
    (this.views || []).forEach((v) => v.dispose());  // their blob URLs would leak
    this.views = views;
    this.list.replaceChildren(...views.map((v) => v.element));
    // Each waveform is fetched when its track scrolls into view.
    this.observer?.disconnect();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries.filter((e) => e.isIntersecting)) {
        this.observer.unobserve(entry.target);
        views.find((v) => v.canvas === entry.target)?.showWaveform().catch(() => {});
      }
    });
    views.forEach((v) => this.observer.observe(v.canvas));
  }
}

// ---- mount ----------------------------------------------------------------------------------------

export async function mount(page) {
  el = page.el;
  addStyle();
  const options = await page.api("/api/music/options");
  const settings = new Settings(options);
  const music = page.section("Music");
  const jobs = el("div", { id: "music-jobs" });
  const error = el("p", { className: "error", hidden: true });
  music.append(settings.element, error, jobs);
  const library = new Library(page, page.section("Track library"));
  library.refresh().catch((err) => { error.textContent = err.message; error.hidden = false; });

  let answer = null;
  const fromAnswer = el("button", { type: "button", id: "music-from-answer", hidden: true,
                                    textContent: "Make music from this answer" });
  const fromPassages = el("button", { type: "button", id: "music-from-passages",
                                      className: "secondary", hidden: true,
                                      textContent: "Make music from the passages" });
  page.answerActions.append(fromAnswer, fromPassages);
  page.onAnswer((result) => {
    answer = result;
    fromAnswer.hidden = !result.answer.trim();
    fromPassages.hidden = result.passages.length === 0;
  });

  async function make(input) {
    const context = answer;
    error.hidden = true;
    const what = input === "answer" ? "the answer" : "the passages";
    const view = new JobView(page, `Music from ${what} to “${context.question}”`);
    jobs.prepend(view.element);
    music.scrollIntoView({ behavior: "smooth", block: "start" });
    try {
      const job = await view.run({
        question: context.question, answer: context.answer || null,
        passages: context.passages, input, ...settings.values(),
      });
      if (job.status !== "done") return;
      const track = new TrackView(page, job.result.track, { context, open: true });
      view.element.append(track.element);
      const shown = job.result.track.sidecar?.prompt_source?.notes || [];  // in its provenance
      for (const note of (job.result.notes || []).filter((n) => !shown.includes(n))) {
        view.element.append(el("p", { className: "muted", textContent: note }));
      }
      await Promise.all([track.showWaveform(), track.load()]);
      await library.refresh();
    } catch (err) {
      view.status.textContent = err.param ? `${err.message} (${err.param})` : err.message;
      view.status.classList.add("error");
      view.cancel.hidden = true;
    }
  }

  fromAnswer.addEventListener("click", () => make("answer"));
  fromPassages.addEventListener("click", () => make("retrieved"));
}
