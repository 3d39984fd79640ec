// One deployment: its header, why it failed (the failing line, seen before) or
// when it should finish (an ETA), a timeline of jobs and steps, per-step logs,
// metrics.
//
// On each event the view is fetched again (debounced) rather than folded here:
// the hub's fold is the one truth.  Elements are kept per job and step and
// updated in place, so open log panels, their scroll and search survive.
// Opened with `?job=&step=&line=` (a line's link), it expands that step, reads its
// log up to the line (however far past the first pages), scrolls to it and marks it.

import { plainText, senderText } from "../ansi.js";
import { ApiError, deploymentLink, deploymentPath, getJSON } from "../api.js";
import {
  MISSING,
  STATUS_ICONS,
  count,
  debounce,
  durationOf,
  formatClock,
  formatDuration,
  h,
  number,
  parseTime,
  safeUrl,
  serial,
  shortCommit,
  staleBadge,
  statusBadge,
  throttle,
  timeAgo,
} from "../dom.js";
import { LogPanel } from "../logs.js";
import { isOpen, markStale, openUntil } from "../stale.js";
import { absoluteTime, zoneLabel } from "../time.js";

const REFRESH_DEBOUNCE_MS = 80;
/** Log lines re-render the page (to revive a stale run) at most this often. */
const NEWS_RENDER_MS = 500;

function metaItem(label, value, node = null) {
  if (value === null || value === undefined || value === "") return null;
  return h("div", { class: "meta-item" }, h("dt", null, label), h("dd", null, node || senderText(value)));
}

/** "Started 3 minutes ago · running for 2m 05s", or "… · took 4m 10s" once it ended. */
function whenLine(view) {
  const open = isOpen(view.status);
  if (!view.started_at) {
    if (open) return "Waiting for its first step…";
    return view.completed_at ? ["Finished ", timeAgo(view.completed_at)] : null;
  }
  return [
    "Started ",
    timeAgo(view.started_at),
    open ? " · running for " : " · took ",
    durationOf(view, "deploy-duration"),
    open && view.last_news_at
      ? h("span", { class: "deploy-news", dataset: { staleNews: view.last_news_at, staleTold: String(Boolean(view.stale)) } }, " · no news since ", timeAgo(view.last_news_at))
      : null,
  ];
}

/** What ran: the workflow (or the project), then the branch and commit it ran on. */
function titleOf(view) {
  return [
    h("span", { class: "title-name" }, senderText(view.workflow_name || view.project)),
    view.branch ? [" ", h("span", { class: "title-ref" }, "on ", h("span", { class: "title-branch" }, senderText(view.branch)))] : null,
    view.commit ? [" ", h("span", { class: "title-ref" }, "at ", h("span", { class: "title-commit mono" }, senderText(shortCommit(view.commit))))] : null,
  ];
}

/** The tab's title: the same, as text. */
function pageTitle(view) {
  const parts = [plainText(view.workflow_name || view.project)];
  if (view.branch) parts.push(`on ${plainText(view.branch)}`);
  if (view.commit) parts.push(`at ${plainText(shortCommit(view.commit))}`);
  return `${parts.join(" ")} · ${view.status} · Deployments`;
}

/** "Notify me when it finishes", while it runs and the browser can show notifications. */
function notifyButton(view, notifier) {
  if (!notifier || !isOpen(view.status)) return null;
  const permission = notifier.permission();
  if (permission === "unsupported") return null;
  if (permission === "denied") {
    return h(
      "button",
      { type: "button", class: "button notify-button", disabled: true, title: "This browser blocks notifications from this page; allow them in the site's settings to be told when a deployment finishes." },
      "Notifications blocked",
    );
  }
  const id = view.deployment_id;
  const on = notifier.isWatching(id);
  return h(
    "button",
    {
      type: "button",
      class: "button notify-button",
      "aria-pressed": String(on),
      title: on ? "You will get a notification when this deployment finishes; click to stop." : "Get a notification when this deployment finishes or fails.",
      // the browser's permission prompt, if any, comes only from this click
      onclick: () => (notifier.isWatching(id) ? notifier.unwatch(id) : notifier.watch(id)),
    },
    on ? "Notifying you when it finishes" : "Notify me when it finishes",
  );
}

function renderHeader(view, notifier) {
  const runUrl = safeUrl(view.run_url);
  const section = h(
    "section",
    { class: "card deploy-head", "aria-labelledby": "deploy-title" },
    h(
      "p",
      { class: "crumbs" },
      h("a", { href: `#/deployments?project=${encodeURIComponent(view.project)}` }, senderText(view.project)),
      h("span", { "aria-hidden": "true" }, " / "),
      h("span", { class: "mono" }, senderText(view.deployment_id)),
    ),
    h(
      "div",
      { class: "deploy-title-row" },
      h("h1", { id: "deploy-title" }, titleOf(view)),
      statusBadge(view.status, "badge-large deploy-status"),
      isOpen(view.status) ? staleBadge(view.last_news_at, view.stale, "badge-large deploy-stale") : null,
      notifyButton(view, notifier),
    ),
    h("p", { class: "deploy-when" }, whenLine(view)),
    h(
      "dl",
      { class: "meta" },
      metaItem("Branch", view.branch),
      metaItem("Commit", view.commit, view.commit ? h("span", { class: "mono", title: plainText(view.commit) }, senderText(shortCommit(view.commit))) : null),
      metaItem("Actor", view.actor),
      metaItem("Environment", view.environment),
      metaItem("Version", view.version),
      metaItem("Environment URL", safeUrl(view.environment_url), safeUrl(view.environment_url) ? h("a", { href: safeUrl(view.environment_url), rel: "noopener noreferrer", target: "_blank" }, senderText(view.environment_url)) : null),
      metaItem("Repository", view.repository),
      metaItem("Workflow run", view.workflow_id || runUrl, runUrl ? h("a", { href: runUrl, rel: "noopener noreferrer", target: "_blank" }, view.workflow_id ? senderText(view.workflow_id) : "open") : null),
      metaItem("Started", view.started_at, absoluteTime(view.started_at)),
      metaItem("Finished", view.completed_at, absoluteTime(view.completed_at)),
    ),
  );
  if (view.error) {
    section.append(h("div", { class: "callout callout-error" }, h("strong", null, "Error"), h("pre", { class: "callout-text" }, senderText(view.error))));
  }
  if (view.message) {
    section.append(h("p", { class: "deploy-message" }, senderText(view.message)));
  }
  if (view.rollback) {
    const from = view.rollback.from_deployment_id;
    section.append(
      h(
        "div",
        { class: "callout callout-warning" },
        h("strong", null, "Rolled back"),
        from ? [" from ", h("a", { href: `#/deployments/${encodeURIComponent(from)}` }, senderText(from))] : null,
        view.rollback.reason ? [": ", senderText(view.rollback.reason)] : null,
      ),
    );
  }
  markStale(section); // stale or not from the start, not only from the next tick
  return section;
}

function seenText(seen) {
  if (!seen.count) return ["First time this failure was seen."];
  const times = seen.count === 1 ? "once" : `${number(seen.count)} times`;
  const links = seen.deployments.map((id, index) => [index ? ", " : "", h("a", { href: deploymentLink(id), class: "mono" }, senderText(id))]);
  return [
    `Seen ${times} before, first on `,
    absoluteTime(seen.first_seen),
    ", last on ",
    absoluteTime(seen.last_seen),
    seen.deployments.length ? [" (latest: ", links, ")"] : null,
    ".",
  ];
}

/** "job / step" of a failed step, as sender text. */
function stepPlace(part) {
  return [senderText(part.job ?? MISSING), " / ", senderText(part.step ?? MISSING)];
}

function failingLine(part) {
  const line = part.line;
  // the line comes without terminal escapes; the message (an error) may still hold colours
  const text = line ? senderText(line.text) : part.message ? senderText(part.message) : "No line or message explains it.";
  return h(
    "div",
    { class: "failure-line" },
    h("pre", { class: "failure-text" }, text),
    line ? h("a", { href: line.link, class: "button failure-link" }, "Show in log") : null,
  );
}

/** Why it failed: the step, the line that explains it, and whether it failed like this before. */
function renderFailure(failure) {
  const others = failure.steps.slice(1);
  const explained = failure.message && failure.line && plainText(failure.message) !== failure.line.text;
  return h(
    "section",
    { class: "card failure-box", "aria-labelledby": "failure-title" },
    h(
      "div",
      { class: "card-head" },
      h("h2", { id: "failure-title" }, failure.job !== null ? ["Why it failed: ", h("span", { class: "failure-step" }, stepPlace(failure))] : "Why it failed"),
      h("a", { href: "#/failures" }, "All failures"),
    ),
    failingLine(failure),
    explained ? h("p", { class: "failure-message muted" }, "Error message: ", senderText(failure.message)) : null,
    h("p", { class: "failure-seen" }, seenText(failure.seen)),
    others.length
      ? h(
          "details",
          { class: "failure-others" },
          h("summary", null, `${count(others.length, "other failed step")}`),
          others.map((step) => h("div", { class: "failure-other" }, h("strong", null, stepPlace(step)), failingLine(step))),
        )
      : null,
  );
}

/**
 * Progress and the ETA of a running deployment, from its project's recent runs.  Like
 * every other timer on the page it stops at the run's last news once the run is stale.
 */
class EtaBar {
  constructor() {
    this.bar = h("progress", { class: "eta-bar", max: "1", value: "0", "aria-label": "Progress" });
    this.text = h("span", { class: "eta-text" });
    this.el = h("div", { class: "eta", role: "status" }, this.bar, this.text);
    this.eta = null;
    this.view = null;
  }

  update(view) {
    this.view = view;
    this.eta = view.eta;
    this.el.hidden = !this.eta;
    if (this.eta) {
      const left = 1 - this.eta.progress;
      this.total = left > 0 ? this.eta.remaining_ms / left : null;
      this.tick();
    }
  }

  tick() {
    const { eta, view } = this;
    if (!eta) return;
    const now = openUntil(view.status, view.last_news_at, Date.now(), view.stale);
    const remaining = Math.max(0, parseTime(eta.finish_at) - now);
    const progress = this.total ? Math.min(1, Math.max(0, 1 - remaining / this.total)) : 1;
    this.bar.value = progress;
    this.bar.textContent = `${Math.round(progress * 100)}%`;
    const runs = `from ${count(eta.basis, "recent run")}`;
    const end = `${formatClock(eta.finish_at)} ${zoneLabel(parseTime(eta.finish_at))}`;
    this.text.textContent = remaining > 0 ? `About ${formatDuration(remaining)} left · ends around ${end} (${runs})` : `Should be finishing now (${runs})`;
  }
}

function renderMetrics(metrics) {
  const section = h("section", { class: "card", "aria-labelledby": "metrics-title" });
  // `_at` is when the hub received these numbers, not one of them
  const { _at: at = null, ...values } = metrics && typeof metrics === "object" ? metrics : {};
  section.append(
    h("div", { class: "card-head" }, h("h2", { id: "metrics-title" }, "Metrics"), at ? h("span", { class: "muted" }, "reported ", timeAgo(at)) : null),
  );
  const entries = Object.entries(values);
  if (!entries.length) {
    section.append(h("p", { class: "muted" }, "No metrics reported."));
    return section;
  }
  const list = h("dl", { class: "metric-list" });
  for (const [key, value] of entries) {
    let shown = value;
    if (typeof value === "number") {
      shown = key.endsWith("_ms") ? formatDuration(value) : number(value);
    } else if (value !== null && typeof value === "object") {
      shown = JSON.stringify(value);
    }
    list.append(h("div", { class: "metric" }, h("dt", null, senderText(key.replace(/_/g, " "))), h("dd", null, senderText(shown ?? MISSING))));
  }
  section.append(list);
  return section;
}

/**
 * The time axis of the timeline: from the deployment's (or its first step's) start to its end,
 * or, while anything is open, to now (to the last news once the run is stale).  Every bar is
 * placed and sized on it from its step's own started_at and completed_at, so bars and the
 * durations beside them come from the same times.
 */
function geometry(view, now) {
  const openEnd = openUntil(view.status, view.last_news_at, now, view.stale);
  // skipped and waiting steps draw nothing, so whatever times they carry do not stretch it
  const steps = view.jobs.flatMap((job) => job.steps).filter((s) => s.status !== "skipped" && s.status !== "pending");
  const starts = [view.started_at, ...steps.map((s) => s.started_at)].map(parseTime).filter((t) => t !== null);
  if (!starts.length) return { start: null, span: null, openEnd };
  const start = Math.min(...starts);
  const ends = [parseTime(view.completed_at), ...steps.map((s) => parseTime(s.completed_at))];
  if (isOpen(view.status) || steps.some((s) => s.status === "running" && s.started_at)) ends.push(openEnd);
  const end = Math.max(start, ...ends.filter((t) => t !== null));
  return { start, span: Math.max(end - start, 1), openEnd };
}

/** Where a step's bar sits on the axis, in percent, or why it has none. */
function barOf(step, geo) {
  if (step.status === "skipped") return { none: "skipped" };
  if (step.status === "pending") return { none: "not started" };
  const started = parseTime(step.started_at);
  if (started === null) return { none: `${step.status}, no times reported` };
  const ended = parseTime(step.completed_at) ?? (isOpen(step.status) ? geo.openEnd : null);
  if (ended === null || geo.span === null) return { none: `${step.status}, no end reported` };
  return {
    left: ((started - geo.start) / geo.span) * 100,
    width: (Math.max(ended - started, 0) / geo.span) * 100,
  };
}

/** What a step's duration label says: its duration_ms, or how long it has been running. */
function stepDuration(step, geo) {
  if (step.status === "running" && step.started_at) return geo.openEnd - parseTime(step.started_at);
  return step.duration_ms;
}

/** Sender text in `el`, colours rendered; hidden when there is none, rewritten only on change. */
function showText(el, text) {
  el.hidden = !text;
  if (el.dataset.text !== (text || "")) {
    el.dataset.text = text || "";
    el.replaceChildren(senderText(text || ""));
  }
}

class StepRow {
  constructor(deploymentId, job, step) {
    this.panel = null;
    this.name = step.name;
    const logId = `steplog-${Math.random().toString(36).slice(2)}`;
    this.icon = h("span", { class: "step-icon", "aria-hidden": "true" });
    this.statusText = h("span", { class: "sr-only" });
    this.toggle = h(
      "button",
      { type: "button", class: "step-toggle", "aria-expanded": "false", "aria-controls": logId, onclick: () => this.setOpen(!this.open) },
      this.icon,
      h("span", { class: "step-name", title: plainText(step.name) }, senderText(step.name)),
      this.statusText,
    );
    this.retries = h("span", { class: "step-retries", hidden: true });
    this.stale = h("span", { class: "step-stale" });
    this.bar = h("div", { class: "step-bar" });
    this.nobar = h("span", { class: "step-nobar", hidden: true });
    this.track = h("div", { class: "step-track", "aria-hidden": "true" }, this.bar, this.nobar);
    this.duration = h("span", { class: "step-duration" });
    this.message = h("p", { class: "step-message", hidden: true });
    this.error = h("pre", { class: "step-error", hidden: true });
    this.logBox = h("div", { class: "step-log", id: logId, hidden: true });
    this.el = h(
      "li",
      { class: "step", dataset: { job: job.name, step: step.name } },
      h("div", { class: "step-row" }, this.toggle, h("span", { class: "step-marks" }, this.retries, this.stale), this.track, this.duration),
      this.message,
      this.error,
      this.logBox,
    );
    this.deploymentId = deploymentId;
    this.jobName = job.name;
    this.open = false;
  }

  update(step, geo, view) {
    this.step = step;
    this.el.dataset.status = step.status;
    this.el.className = `step status-${step.status}`;
    this.icon.textContent = STATUS_ICONS[step.status] || "○";
    this.statusText.textContent = `, ${step.status}`;
    this.retries.hidden = !step.retries;
    this.retries.textContent = step.retries ? `↻ ${step.retries}` : "";
    this.retries.title = step.retries ? `retried ${step.retries} time${step.retries === 1 ? "" : "s"}` : "";
    const open = isOpen(step.status);
    if (open) {
      this.el.dataset.staleNews = view.last_news_at || "";
      this.el.dataset.staleTold = String(Boolean(step.stale));
    } else {
      delete this.el.dataset.staleNews;
      delete this.el.dataset.staleTold;
      this.el.dataset.stale = "false";
    }
    this.stale.replaceChildren(open ? staleBadge(view.last_news_at, step.stale) : "");
    showText(this.message, step.message);
    showText(this.error, step.error);
    this.layout(geo);
  }

  /** Place the bar and write the duration; called on every update and every second. */
  layout(geo) {
    const step = this.step;
    if (!step) return;
    const bar = barOf(step, geo);
    this.bar.hidden = Boolean(bar.none);
    this.nobar.hidden = !bar.none;
    this.track.classList.toggle("track-empty", Boolean(bar.none));
    if (bar.none) this.nobar.textContent = bar.none;
    else {
      this.bar.style.left = `${bar.left}%`;
      this.bar.style.width = `${bar.width}%`;
    }
    const ms = stepDuration(step, geo);
    this.duration.textContent = formatDuration(ms);
    this.duration.dataset.ms = ms === null || ms === undefined ? "" : String(Math.round(ms));
    markStale(this.el);
  }

  /** Expand or fold the step's log; expanding reads it, from its start or (`line`) at that line. */
  setOpen(open, line = null) {
    this.open = open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.logBox.hidden = !open;
    if (open && !this.panel) {
      this.panel = new LogPanel({
        deploymentId: this.deploymentId,
        job: this.jobName,
        step: this.name,
        follow: isOpen(this.step?.status),
        label: `Log of ${plainText(this.name)}`,
      });
      this.logBox.append(this.panel.el);
      if (line === null) this.panel.load();
    }
  }
}

class JobBlock {
  constructor(deploymentId, job) {
    this.deploymentId = deploymentId;
    this.rows = new Map();
    this.badge = h("span", { class: "badges" });
    this.duration = h("span", { class: "job-duration" });
    this.list = h("ol", { class: "steps" });
    this.el = h(
      "section",
      { class: "job", dataset: { job: job.name } },
      h("div", { class: "job-head" }, h("h3", { class: "job-name" }, senderText(job.name)), this.badge, this.duration),
      this.list,
    );
  }

  update(job, geo, view) {
    this.el.dataset.status = job.status;
    this.badge.replaceChildren(statusBadge(job.status), isOpen(job.status) ? staleBadge(view.last_news_at, job.stale) : "");
    this.duration.replaceChildren(durationOf(job, "", view.last_news_at));
    job.steps.forEach((step, index) => {
      let row = this.rows.get(step.name);
      if (!row) {
        row = new StepRow(this.deploymentId, job, step);
        this.rows.set(step.name, row);
      }
      row.update(step, geo, view);
      if (this.list.children[index] !== row.el) this.list.insertBefore(row.el, this.list.children[index] || null);
    });
  }

  layout(geo) {
    for (const row of this.rows.values()) row.layout(geo);
  }
}

export function deploymentView(main, id, live, query = new URLSearchParams(), notifier = null) {
  let view = null;
  let disposed = false;
  const jobs = new Map();
  const head = h("div");
  const failureBox = h("div");
  const eta = new EtaBar();
  const target = query.get("line") ? { line: query.get("line"), job: query.get("job"), step: query.get("step") } : null;
  const targetNote = h(
    "p",
    { class: "callout callout-warning target-note", role: "status", hidden: true },
    "That log line is not in this log any more (pruned with its deployment's old lines).",
  );
  const timelineList = h("div", { class: "jobs" });
  const timelineEmpty = h("p", { class: "muted" }, "No steps reported yet.");
  const metrics = h("div");
  const fullLog = new LogPanel({ deploymentId: id, follow: true, label: "Full log" });
  const fullLogBox = h("div", { class: "full-log", hidden: true }, fullLog.el);
  const fullLogToggle = h(
    "button",
    {
      type: "button",
      class: "button",
      "aria-expanded": "false",
      onclick: () => {
        const open = fullLogBox.hidden;
        fullLogBox.hidden = !open;
        fullLogToggle.setAttribute("aria-expanded", String(open));
        fullLogToggle.textContent = open ? "Hide full log" : "Show full log";
        if (open) fullLog.load();
      },
    },
    "Show full log",
  );
  fullLogToggle.hidden = true; // until the view says there is a log
  const status = h("p", { class: "muted", role: "status" }, "Loading deployment…");
  main.replaceChildren(
    status,
    head,
    failureBox,
    targetNote,
    h(
      "section",
      { class: "card timeline", "aria-labelledby": "timeline-title" },
      h("div", { class: "card-head" }, h("h2", { id: "timeline-title" }, "Jobs and steps"), fullLogToggle),
      timelineEmpty,
      timelineList,
      fullLogBox,
    ),
    metrics,
  );

  /** The header, with the ETA under it (one bar, kept across renders). */
  function showHeader() {
    const header = renderHeader(view, notifier);
    eta.update(view);
    header.append(eta.el);
    head.replaceChildren(header);
  }

  function render() {
    status.hidden = true;
    document.title = pageTitle(view);
    showHeader();
    failureBox.replaceChildren(...(view.failure ? [renderFailure(view.failure)] : []));
    const geo = geometry(view, Date.now());
    timelineEmpty.hidden = view.jobs.length > 0;
    // no "Show full log" for a deployment that has none (an open one stays open)
    fullLogToggle.hidden = !view.log_lines && fullLogBox.hidden;
    view.jobs.forEach((job, index) => {
      let block = jobs.get(job.name);
      if (!block) {
        block = new JobBlock(id, job);
        jobs.set(job.name, block);
      }
      block.update(job, geo, view);
      if (timelineList.children[index] !== block.el) timelineList.insertBefore(block.el, timelineList.children[index] || null);
    });
    metrics.replaceChildren(renderMetrics(view.metrics));
  }

  const refresh = serial(async () => {
    try {
      view = await getJSON(deploymentPath(id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        status.textContent = "This deployment has not been reported yet; waiting for its events…";
        return;
      }
      status.hidden = false;
      status.textContent = `Could not load the deployment: ${error.message}`;
      return;
    }
    if (!disposed) render();
  });
  const scheduleRefresh = debounce(refresh, REFRESH_DEBOUNCE_MS);

  // A log line is news too: it revives a stale run. The view is not fetched again for
  // every line; the time it arrived stands in for the hub's last_news_at until the next
  // fetch brings the hub's own.
  const renderNews = throttle(() => {
    if (view && !disposed) render();
  }, NEWS_RENDER_MS);
  function heardNews() {
    if (!view) return;
    const now = new Date().toISOString();
    if (!view.last_news_at || view.last_news_at < now) view.last_news_at = now;
    view.stale = false;
    renderNews();
  }

  function openPanels() {
    const panels = [...jobs.values()].flatMap((block) => [...block.rows.values()]).map((row) => row.panel);
    return [...panels, fullLog].filter((panel) => panel && panel.loaded);
  }
  const refreshLogs = debounce(() => openPanels().forEach((panel) => panel.refresh()), REFRESH_DEBOUNCE_MS);

  let unsubscribe = null;
  const handlers = {
    onEvent(event) {
      if (event.type === "log_entry") {
        for (const panel of openPanels()) if (panel.accepts(event)) panel.appendEvent(event);
        if (view) view.log_lines = (view.log_lines || 0) + 1; // there is a log now: offer it
        heardNews();
        return;
      }
      scheduleRefresh();
      if (event.payload && (event.payload.logs || event.payload.error)) refreshLogs();
    },
    onReset() {
      refresh();
      openPanels().forEach((panel) => panel.reload());
    },
  };

  /** Expand the target line's step (or the full log), scroll to the line and mark it. */
  async function openTarget() {
    let panel = fullLog;
    const row = target.step !== null ? jobs.get(target.job ?? "default")?.rows.get(target.step) : null;
    if (row) {
      row.setOpen(true, target.line);
      row.el.scrollIntoView({ block: "start" });
      panel = row.panel;
    } else {
      fullLogBox.hidden = false;
      fullLogToggle.hidden = false;
      fullLogToggle.setAttribute("aria-expanded", "true");
      fullLogToggle.textContent = "Hide full log";
    }
    if (!(await panel.seek(target.line)) && !disposed) targetNote.hidden = false;
  }

  const onNotifier = () => {
    if (view && !disposed) showHeader();
  };
  notifier?.addEventListener("change", onNotifier);

  refresh().then(() => {
    if (disposed) return;
    unsubscribe = live.subscribe("deployment", id, handlers, { since: view ? view.last_event_id : null });
    if (target && view) openTarget();
  });

  return {
    tick() {
      if (!view) return;
      eta.tick();
      const geo = geometry(view, Date.now());
      for (const block of jobs.values()) block.layout(geo);
    },
    dispose() {
      disposed = true;
      notifier?.removeEventListener("change", onNotifier);
      scheduleRefresh.cancel();
      refreshLogs.cancel();
      if (unsubscribe) unsubscribe();
      for (const block of jobs.values()) for (const row of block.rows.values()) row.panel?.dispose();
      fullLog.dispose();
    },
  };
}
