// A log panel: one step's log lines (or a whole deployment's), read from the API a page
// at a time and then extended live from `log_entry` events.
//
// Every line has a number, its place in that log (the Nth line of the step), the same
// however it arrived: counted on from the first page, or given by the hub with a page
// read backwards (`before=`: the page that ends just before a line, with the number of
// its first).  A panel renders at most MAX_LINES lines at a time: reading on pushes the
// oldest out, and "Show earlier lines" reads them back, a page before the first shown.
// Opening a line's link (`seek`) reads the page that ends at the line, and following a
// long running log reads its last page, without reading what comes before.
//
// A line can reach the panel twice (read after it was already shown live, or the other
// way round); every line carries the id of the event it came from, so each event is shown
// once, and a line shown live takes its id (and its link) when the read catches up with
// it.  `::group::`/`::endgroup::` (and `##[group]`) fold into <details>, as GitHub Actions
// shows them.  Timestamps and levels are shown as logprefs.js says, in every panel at once.

import { renderAnsi, stripAnsi } from "./ansi.js";
import { deploymentPath, fileUrl, getJSON, lineLink } from "./api.js";
import { debounce, formatClock, h, number, serial } from "./dom.js";
import { LEVELS, leastLevel, levelShown, setLeastLevel, setTimesShown, timesShown } from "./logprefs.js";
import { formatDateTime } from "./time.js";

const PAGE_LINES = 1000;
/** `before=` past every line id (the hub's largest, app/query.py MAX_SEQ): a log's last page. */
const LAST_LINE = "9223372036854775807";
/** Most lines rendered at once (and read when a panel opens). */
const MAX_LINES = 5000;
/** How close to either end of the log a scroll has to come to read more, in pixels. */
const NEAR_EDGE = 120;
/** A line shown live learns its id from a read this long after its event. */
const ADOPT_MS = 300;
const GROUP_START = /^(?:::group::|##\[group\])(.*)$/;
const GROUP_END = /^(?:::endgroup::|##\[endgroup\])/;
// Python's str.splitlines(), which cuts an event's text into stored lines (ledger/logs.py)
const LINE_BREAK = /\r\n|[\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029]/;
const LEVEL_LABELS = { debug: "All levels", info: "Info and above", warning: "Warnings and errors", error: "Errors only" };

let panelCount = 0;

/** The stored lines of an event's text, cut as the hub cuts them. */
function splitLines(text) {
  if (!text) return [];
  const lines = text.split(LINE_BREAK);
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Where rendered lines go: a container, and the group (::group::) being filled, if any. */
class Writer {
  constructor(target) {
    this.target = target;
    this.group = null;
  }
}

export class LogPanel {
  /** job/step null: every line of the deployment. */
  constructor({ deploymentId, job = null, step = null, follow = true, label = "Log" }) {
    this.deploymentId = deploymentId;
    this.job = job;
    this.step = step;
    this.records = new WeakMap(); // line element -> {search, level}
    this.query = "";
    this.loaded = false;
    this.follow = follow;
    this.reset();
    this.refresh = serial(() => this.readNew());
    this.reading = null;
    this.adoptSoon = debounce(() => this.refresh(), ADOPT_MS);
    panelCount += 1;
    const id = `log-${panelCount}`;

    this.search = h("input", {
      type: "search",
      class: "log-search",
      placeholder: "Search log",
      "aria-label": `Search ${label}`,
      oninput: debounce(() => this.applySearch(), 120),
    });
    this.matches = h("span", { class: "log-matches", "aria-live": "polite" });
    this.levelSelect = h(
      "select",
      { class: "log-level", "aria-label": `Levels shown in ${label}`, onchange: () => setLeastLevel(this.levelSelect.value) },
      LEVELS.map((level) => h("option", { value: level }, LEVEL_LABELS[level])),
    );
    this.timesButton = h("button", { type: "button", class: "toggle log-times-toggle", onclick: () => setTimesShown(!timesShown()) }, "Timestamps");
    this.followButton = h(
      "button",
      { type: "button", class: "toggle", "aria-pressed": String(follow), onclick: () => this.setFollow(!this.follow) },
      "Follow",
    );
    const fileHref = () => fileUrl(`${deploymentPath(deploymentId)}/logs.txt`, { job: this.job, step: this.step });
    this.download = h(
      "a",
      {
        class: "link-button log-download",
        href: fileHref(),
        download: "",
        title: "Save every line of this log as plain text",
        onclick: () => this.download.setAttribute("href", fileHref()), // the token given since
      },
      "Download",
    );
    this.earlierNote = h("span");
    this.earlier = h(
      "div",
      { class: "log-more log-earlier", hidden: true },
      this.earlierNote,
      h("button", { type: "button", class: "link-button", onclick: () => this.showEarlier() }, "Show earlier lines"),
    );
    this.moreButton = h("button", { type: "button", class: "link-button", onclick: () => this.readMore() }, "Load more lines");
    this.more = h("div", { class: "log-more log-later", hidden: true }, this.moreButton);
    this.emptyNote = h("p", { class: "log-empty" }, "Loading log…");
    this.lines = h("div", { class: "log-lines" }, this.emptyNote);
    this.body = h(
      "div",
      { class: "log-body", id, role: "log", tabindex: "0", "aria-label": label, onscroll: () => this.onScroll() },
      this.earlier,
      this.lines,
      this.more,
    );
    this.el = h(
      "div",
      { class: "log-panel" },
      h(
        "div",
        { class: "log-tools" },
        this.search,
        this.matches,
        h("span", { class: "spacer" }),
        this.levelSelect,
        this.timesButton,
        this.followButton,
        this.download,
      ),
      this.body,
    );
    this.showPrefs = () => {
      this.timesButton.setAttribute("aria-pressed", String(timesShown()));
      this.levelSelect.value = leastLevel();
      if (this.query) this.applySearch();
    };
    this.showPrefs();
    window.addEventListener("logprefschange", this.showPrefs);
  }

  /** Forget every line: the next read starts from the first. */
  reset() {
    this.generation = (this.generation || 0) + 1;
    this.after = null; // cursor: the id of the last line read from the API
    this.total = 0; // the number of the last line numbered
    this.complete = false; // the last read reached the end of what is stored
    this.recent = [new Set(), new Set()]; // events read in the last two pages
    this.pending = new Map(); // event id -> its lines shown live, awaiting their ids
    this.lineCount = 0; // lines rendered
    this.writer = null;
  }

  accepts(event) {
    if (this.job === null && this.step === null) return true;
    return (event.payload.job ?? null) === this.job && (event.payload.step ?? null) === this.step;
  }

  /** Read the first pages (the last, when following), or what `first` reads instead. */
  load(first = () => this.readFirst()) {
    if (!this.loaded) {
      this.loaded = true;
      this.writer = new Writer(this.lines);
      this.loading = first();
    }
    return this.loading;
  }

  async readFirst() {
    if (this.follow) await this.readNew();
    else {
      for (let page = 0; page < MAX_LINES / PAGE_LINES && !this.complete; page += 1) {
        if ((await this.readPage()) === false) break;
      }
    }
    this.updateEmpty();
  }

  /** Once at the end: what was stored since.  Following a log not read to its end: its last page. */
  async readNew() {
    if (!this.loaded) return;
    if (!this.complete) {
      if (this.follow) await this.jump(LAST_LINE);
      return;
    }
    do {
      if ((await this.readPage()) === false) return;
    } while (!this.complete);
  }

  /** Show the line with id `lineId`, reading the page that ends at it; false when it is not in this log. */
  async seek(lineId) {
    if (!/^[0-9]{1,19}$/.test(String(lineId))) return false;
    this.setFollow(false);
    const at = async () => {
      await this.jump(String(BigInt(lineId) + 1n));
      if (!this.complete) await this.readPage(); // and what follows it
    };
    await this.load(at); // a panel not read yet starts there
    if (!this.lineElement(lineId)) await at();
    return this.focusLine(lineId);
  }

  /** The lines before the line with id `before` (or the last page, LAST_LINE) in place of those shown. */
  async jump(before) {
    const answer = await this.readBefore(before);
    if (!answer) return;
    this.reset();
    this.clearLines();
    const lines = answer.lines || [];
    this.total = answer.first_number - 1;
    for (const line of lines) {
      this.total += 1;
      this.appendLine(line, this.total, this.writer);
    }
    this.after = answer.next_cursor ?? (lines.length ? lines[lines.length - 1].id : null);
    this.complete = !answer.next_cursor;
    this.recent = [new Set(), new Set(lines.map((line) => line.event_id))];
    this.updateEnds();
    if (this.follow) this.scrollToEnd();
  }

  /** A page ending just before the line with id `before`, with `first_number`; null when unreadable. */
  async readBefore(before) {
    try {
      return await getJSON(`${deploymentPath(this.deploymentId)}/logs`, { job: this.job, step: this.step, before, limit: PAGE_LINES });
    } catch (error) {
      this.emptyNote.textContent = error.status === 404 ? "No log lines yet." : `Log unavailable: ${error.message}`;
      return null;
    }
  }

  lineElement(lineId) {
    return this.lines.querySelector(`.log-line[data-line-id="${CSS.escape(String(lineId))}"]`);
  }

  /** Read the page after the last line read and render it; false when the hub did not answer. */
  async readPage() {
    if (!this.loaded) return false;
    const { after, generation } = this;
    let answer;
    try {
      answer = await getJSON(`${deploymentPath(this.deploymentId)}/logs`, { job: this.job, step: this.step, after, limit: PAGE_LINES });
    } catch (error) {
      this.emptyNote.textContent = error.status === 404 ? "No log lines yet." : `Log unavailable: ${error.message}`;
      return false;
    }
    if (after !== this.after || generation !== this.generation) return true; // read meanwhile, or reset
    const lines = answer.lines || [];
    this.recent = [this.recent[1], new Set(lines.map((line) => line.event_id))];
    const stick = this.follow;
    for (const line of lines) {
      this.after = line.id;
      const waiting = this.pending.get(line.event_id);
      if (waiting) {
        this.adopt(waiting.shift(), line);
        if (!waiting.length) this.pending.delete(line.event_id);
        continue;
      }
      this.total += 1;
      this.appendLine(line, this.total, this.writer);
    }
    this.trimTop();
    if (stick) this.scrollToEnd();
    this.complete = !answer.next_cursor;
    this.updateEnds();
    return true;
  }

  /** The next page, once: a scroll that asks again while it is read asks for the same page. */
  readMore() {
    if (!this.reading) this.reading = this.readPage().finally(() => (this.reading = null));
    return this.reading;
  }

  /** A live log_entry event: its lines go in now when the panel has read to the end. */
  appendEvent(event) {
    if (!this.loaded || !this.complete || this.pending.has(event.id) || this.recent.some((ids) => ids.has(event.id))) return;
    const payload = event.payload || {};
    const lines = splitLines(String(payload.message || payload.logs || ""));
    if (!lines.length) return;
    const stick = this.follow;
    const shown = lines.map((message) => {
      this.total += 1;
      return this.appendLine({ level: payload.level || "info", timestamp: event.timestamp, message, event_id: event.id }, this.total, this.writer);
    });
    this.pending.set(event.id, shown);
    this.trimTop();
    if (stick) this.scrollToEnd();
    this.updateEnds();
    this.adoptSoon();
  }

  /** A line shown live, now read from the API: it gets its id and its link. */
  adopt(el, line) {
    if (!el || !el.isConnected) return;
    el.dataset.lineId = String(line.id);
    const numberEl = el.querySelector(".log-num");
    numberEl.replaceWith(this.numberLink(line, Number(el.dataset.number)));
  }

  numberLink(line, n) {
    return h(
      "a",
      { class: "log-num", href: lineLink(this.deploymentId, line.job ?? this.job, line.step ?? this.step, line.id), title: `Link to line ${n}` },
      String(n),
    );
  }

  /** Render one line numbered `n` where `writer` says; its element (null for a group marker). */
  appendLine(line, n, writer) {
    const message = String(line.message ?? "");
    const plain = stripAnsi(message);
    const start = GROUP_START.exec(plain);
    if (start) {
      const body = h("div", { class: "log-group-body" });
      writer.target.append(h("details", { class: "log-group" }, h("summary", null, start[1].trim() || "Group"), body));
      writer.group = body;
      return null;
    }
    if (GROUP_END.test(plain)) {
      writer.group = null;
      return null;
    }
    const level = LEVELS.includes(line.level) ? line.level : "info";
    const known = line.id !== undefined && line.id !== null;
    // the clock and its title follow the zone switch (time.js retime)
    const stamp = line.timestamp || null;
    const when = stamp ? { clockAt: stamp, titleAt: stamp } : {};
    const el = h(
      "div",
      { class: `log-line level-${level}`, dataset: { number: String(n), ...(known ? { lineId: String(line.id) } : {}) } },
      known ? this.numberLink(line, n) : h("span", { class: "log-num" }, String(n)),
      h("span", { class: "log-time", title: stamp ? formatDateTime(stamp) : null, dataset: when }, formatClock(stamp)),
      h("span", { class: "log-text" }, renderAnsi(message)),
    );
    this.records.set(el, { search: plain.toLowerCase(), level });
    (writer.group || writer.target).append(el);
    this.lineCount += 1;
    if (this.query) this.matchLine(el);
    return el;
  }

  /** Past MAX_LINES, the oldest lines leave (whole groups at a time). */
  trimTop() {
    while (this.lineCount > MAX_LINES && this.lines.firstElementChild) {
      const first = this.lines.firstElementChild;
      if (this.writer.group && first.contains(this.writer.group)) break; // the group still filling
      this.lineCount -= first.classList.contains("log-line") ? 1 : first.querySelectorAll(".log-line").length;
      first.remove();
    }
  }

  clearLines() {
    this.lines.replaceChildren();
    this.lineCount = 0;
    this.writer = new Writer(this.lines);
  }

  /** The number of the first line rendered (the next to come when none is). */
  firstNumber() {
    const first = this.lines.querySelector(".log-line");
    return first ? Number(first.dataset.number) : this.total + 1;
  }

  /** Read back the page of lines before the first one rendered, above it. */
  async showEarlier() {
    const first = this.lines.querySelector(".log-line[data-line-id]");
    if (!first) return;
    const answer = await this.readBefore(first.dataset.lineId);
    if (!answer || !first.isConnected) return;
    const writer = new Writer(document.createDocumentFragment());
    (answer.lines || []).forEach((line, index) => this.appendLine(line, answer.first_number + index, writer));
    this.setFollow(false);
    const height = this.body.scrollHeight;
    this.lines.prepend(writer.target);
    this.body.scrollTop += this.body.scrollHeight - height; // the lines in view stay in view
    this.trimBottom();
    this.updateEnds();
  }

  /** Past MAX_LINES, the newest lines leave; reading on starts again after the last kept. */
  trimBottom() {
    if (this.lineCount <= MAX_LINES) return;
    while (this.lineCount > MAX_LINES && this.lines.lastElementChild) {
      const last = this.lines.lastElementChild;
      this.lineCount -= last.classList.contains("log-line") ? 1 : last.querySelectorAll(".log-line").length;
      last.remove();
    }
    const kept = [...this.lines.querySelectorAll(".log-line")];
    let keep = kept.length - 1;
    while (keep >= 0 && !kept[keep].dataset.lineId) keep -= 1; // lines shown live have no cursor
    for (const el of kept.slice(keep + 1)) {
      el.remove();
      this.lineCount -= 1;
    }
    const last = kept[keep];
    this.after = last ? last.dataset.lineId : null;
    this.total = last ? Number(last.dataset.number) : 0;
    this.complete = false;
    this.pending.clear();
    this.writer = new Writer(this.lines);
  }

  /** The notes above and below the lines: what is not rendered, and how to get it. */
  updateEnds() {
    const first = this.firstNumber();
    this.earlier.hidden = first <= 1;
    this.earlierNote.textContent = first > 1 ? `${number(first - 1)} earlier ${first === 2 ? "line" : "lines"} not shown. ` : "";
    this.more.hidden = this.complete;
    this.updateEmpty();
  }

  /** Scroll to one line (by id), open its group and mark it; false if it is not shown. */
  focusLine(lineId) {
    const el = this.lineElement(lineId);
    if (!el) return false;
    for (const marked of this.lines.querySelectorAll(".log-line-target")) {
      marked.classList.remove("log-line-target");
      marked.removeAttribute("aria-current");
    }
    for (let group = el.closest("details"); group; group = group.parentElement?.closest("details")) group.open = true;
    this.setFollow(false);
    el.hidden = false;
    el.classList.add("log-line-target");
    el.setAttribute("aria-current", "true");
    el.scrollIntoView({ block: "center" });
    return true;
  }

  /** Start again from nothing (the hub's history no longer reaches back to us). */
  async reload() {
    this.reset();
    this.clearLines();
    this.lines.replaceChildren(this.emptyNote);
    this.loaded = false;
    await this.load();
  }

  updateEmpty() {
    if (this.lineCount > 0 || this.lines.querySelector(".log-group") || this.total > 0) this.emptyNote.remove();
    else {
      this.emptyNote.textContent = "No log lines yet.";
      if (!this.emptyNote.isConnected) this.lines.append(this.emptyNote);
    }
  }

  matchLine(el) {
    const record = this.records.get(el);
    const hit = !this.query || (record && record.search.includes(this.query));
    el.hidden = !hit;
    return hit && (!record || levelShown(record.level));
  }

  applySearch() {
    this.query = this.search.value.trim().toLowerCase();
    let hits = 0;
    for (const el of this.lines.querySelectorAll(".log-line")) if (this.matchLine(el)) hits += 1;
    for (const group of this.lines.querySelectorAll(".log-group")) {
      const any = group.querySelector(".log-line:not([hidden])") !== null;
      group.hidden = Boolean(this.query) && !any;
      if (this.query && any) group.open = true;
    }
    this.matches.textContent = this.query ? `${hits} ${hits === 1 ? "match" : "matches"}` : "";
  }

  setFollow(on) {
    this.follow = on;
    this.followButton.setAttribute("aria-pressed", String(on));
    if (on) {
      this.scrollToEnd();
      if (this.loaded && !this.complete) this.refresh();
    }
  }

  scrollToEnd() {
    this.body.scrollTop = this.body.scrollHeight;
  }

  onScroll() {
    const fromEnd = this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight;
    const atEnd = fromEnd < 24 && this.complete;
    if (atEnd !== this.follow) this.setFollow(atEnd); // scrolling up pauses following
    if (fromEnd < NEAR_EDGE && !this.complete && this.loaded) this.readMore();
  }

  dispose() {
    window.removeEventListener("logprefschange", this.showPrefs);
    this.adoptSoon.cancel();
  }
}
