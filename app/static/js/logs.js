// A log panel: one step's log lines (or a whole deployment's), loaded from the
// read API and then extended live from `log_entry` events.
//
// A line can reach the panel twice (fetched after it was already shown live, or
// the other way round); every line carries the id of the event it came from, so
// each event is shown once.  `::group::`/`::endgroup::` (and `##[group]`) fold
// into <details>, as GitHub Actions shows them.  Each line read from the API
// carries its id, and its time is its stable link (deployment, step, line id).

import { renderAnsi, stripAnsi } from "./ansi.js";
import { deploymentPath, getJSON, lineLink } from "./api.js";
import { debounce, formatClock, h, serial } from "./dom.js";
import { formatDateTime } from "./time.js";

const PAGE_LINES = 1000;
const MAX_LINES = 5000;
const GROUP_START = /^(?:::group::|##\[group\])(.*)$/;
const GROUP_END = /^(?:::endgroup::|##\[endgroup\])/;

let panelCount = 0;

export class LogPanel {
  /** job/step null: every line of the deployment. */
  constructor({ deploymentId, job = null, step = null, follow = true, label = "Log" }) {
    this.deploymentId = deploymentId;
    this.job = job;
    this.step = step;
    this.after = null;
    this.fetched = new Set(); // events whose lines came from the API
    this.shown = new Set(); // events shown live
    this.lineCount = 0;
    this.dropped = 0;
    this.records = new WeakMap(); // line element -> {text, plain, level, timestamp}
    this.group = null;
    this.query = "";
    this.loaded = false;
    this.refresh = serial(() => this.fetchNew());
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
    this.followButton = h(
      "button",
      { type: "button", class: "toggle", "aria-pressed": String(follow), onclick: () => this.setFollow(!this.follow) },
      "Follow",
    );
    this.follow = follow;
    this.download = h("button", { type: "button", class: "link-button", onclick: () => this.saveFile() }, "Download");
    this.body = h("div", {
      class: "log-body",
      id,
      role: "log",
      tabindex: "0",
      "aria-label": label,
      onscroll: () => this.onScroll(),
    });
    this.emptyNote = h("p", { class: "log-empty" }, "Loading log…");
    this.body.append(this.emptyNote);
    this.el = h(
      "div",
      { class: "log-panel" },
      h("div", { class: "log-tools" }, this.search, this.matches, h("span", { class: "spacer" }), this.followButton, this.download),
      this.body,
    );
  }

  accepts(event) {
    if (this.job === null && this.step === null) return true;
    return (event.payload.job ?? null) === this.job && (event.payload.step ?? null) === this.step;
  }

  load() {
    if (!this.loaded) {
      this.loaded = true;
      this.loading = this.refresh();
    }
    return this.loading;
  }

  /** Scroll to one line (by id), open its group and mark it; false if it is not shown. */
  focusLine(lineId) {
    const el = this.body.querySelector(`.log-line[data-line-id="${CSS.escape(String(lineId))}"]`);
    if (!el) return false;
    for (const marked of this.body.querySelectorAll(".log-line-target")) {
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
    this.body.replaceChildren(this.emptyNote);
    this.after = null;
    this.fetched.clear();
    this.shown.clear();
    this.lineCount = 0;
    this.group = null;
    await this.refresh();
  }

  async fetchNew() {
    for (let page = 0; page < MAX_LINES / PAGE_LINES; page += 1) {
      let answer;
      try {
        answer = await getJSON(`${deploymentPath(this.deploymentId)}/logs`, {
          job: this.job,
          step: this.step,
          after: this.after,
          limit: PAGE_LINES,
        });
      } catch (error) {
        this.emptyNote.textContent = error.status === 404 ? "No log lines yet." : `Log unavailable: ${error.message}`;
        return;
      }
      const lines = answer.lines || [];
      const fresh = [];
      for (const line of lines) {
        this.after = line.id;
        if (this.shown.has(line.event_id)) continue;
        this.fetched.add(line.event_id);
        fresh.push(line);
      }
      this.append(fresh);
      if (!answer.next_cursor || lines.length === 0) break;
    }
    this.updateEmpty();
  }

  /** A live log_entry event: its lines go in now, unless the API already gave them. */
  appendEvent(event) {
    if (this.fetched.has(event.id) || this.shown.has(event.id)) return;
    this.shown.add(event.id);
    const payload = event.payload || {};
    const text = String(payload.message ?? payload.logs ?? "");
    const lines = text.split(/\r?\n/);
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    this.append(
      lines.map((message) => ({ level: payload.level || "info", timestamp: event.timestamp, message, event_id: event.id })),
    );
    this.updateEmpty();
  }

  append(lines) {
    if (!lines.length) return;
    const stick = this.follow;
    for (const line of lines) this.appendLine(line);
    while (this.lineCount > MAX_LINES && this.body.firstElementChild) {
      const first = this.body.firstElementChild;
      const removed = first.classList.contains("log-group") ? first.querySelectorAll(".log-line").length : first.classList.contains("log-line") ? 1 : 0;
      first.remove();
      this.lineCount -= removed;
      this.dropped += removed;
    }
    if (stick) this.scrollToEnd();
  }

  appendLine(line) {
    const message = String(line.message ?? "");
    const plain = stripAnsi(message);
    const start = GROUP_START.exec(plain);
    if (start) {
      const body = h("div", { class: "log-group-body" });
      const group = h("details", { class: "log-group" }, h("summary", null, start[1].trim() || "Group"), body);
      this.body.append(group);
      this.group = body;
      return;
    }
    if (GROUP_END.test(plain)) {
      this.group = null;
      return;
    }
    const level = ["debug", "info", "warning", "error"].includes(line.level) ? line.level : "info";
    const known = line.id !== undefined && line.id !== null;
    // the clock and its title follow the zone switch (time.js retime)
    const stamp = line.timestamp || null;
    const when = stamp ? { clockAt: stamp, titleAt: stamp, titlePrefix: known ? "Link to this line · " : "" } : {};
    const time = known
      ? h(
          "a",
          {
            class: "log-time",
            href: lineLink(this.deploymentId, line.job ?? this.job, line.step ?? this.step, line.id),
            title: `${when.titlePrefix || ""}${formatDateTime(stamp)}`,
            dataset: when,
          },
          formatClock(stamp),
        )
      : h("span", { class: "log-time", title: stamp ? formatDateTime(stamp) : null, dataset: when }, formatClock(stamp));
    const el = h(
      "div",
      { class: `log-line level-${level}`, dataset: known ? { lineId: String(line.id) } : null },
      time,
      h("span", { class: "log-text" }, renderAnsi(message)),
    );
    this.records.set(el, { plain, search: plain.toLowerCase(), level, timestamp: line.timestamp || "" });
    (this.group || this.body).append(el);
    this.lineCount += 1;
    if (this.query) this.matchLine(el);
  }

  updateEmpty() {
    if (this.lineCount > 0 || this.body.querySelector(".log-group")) this.emptyNote.remove();
    else {
      this.emptyNote.textContent = "No log lines yet.";
      if (!this.emptyNote.isConnected) this.body.append(this.emptyNote);
    }
  }

  matchLine(el) {
    const record = this.records.get(el);
    const hit = !this.query || (record && record.search.includes(this.query));
    el.hidden = !hit;
    return hit;
  }

  applySearch() {
    this.query = this.search.value.trim().toLowerCase();
    let hits = 0;
    for (const el of this.body.querySelectorAll(".log-line")) if (this.matchLine(el)) hits += 1;
    for (const group of this.body.querySelectorAll(".log-group")) {
      const any = group.querySelector(".log-line:not([hidden])") !== null;
      group.hidden = Boolean(this.query) && !any;
      if (this.query && any) group.open = true;
    }
    this.matches.textContent = this.query ? `${hits} ${hits === 1 ? "match" : "matches"}` : "";
  }

  setFollow(on) {
    this.follow = on;
    this.followButton.setAttribute("aria-pressed", String(on));
    if (on) this.scrollToEnd();
  }

  scrollToEnd() {
    this.body.scrollTop = this.body.scrollHeight;
  }

  onScroll() {
    const atEnd = this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight < 24;
    if (atEnd !== this.follow) this.setFollow(atEnd); // scrolling up pauses following
  }

  saveFile() {
    const rows = [];
    if (this.dropped) rows.push(`[${this.dropped} earlier lines not shown]`);
    for (const el of this.body.querySelectorAll(".log-line")) {
      const record = this.records.get(el);
      if (record) rows.push(`${record.timestamp} ${record.level.toUpperCase().padEnd(7)} ${record.plain}`);
    }
    const blob = new Blob([`${rows.join("\n")}\n`], { type: "text/plain;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const name = [this.deploymentId, this.job, this.step].filter(Boolean).join("-").replace(/[^\w.-]+/g, "_");
    const link = h("a", { href: url, download: `${name || "deployment"}.log`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}
