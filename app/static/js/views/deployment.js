// One deployment: its header, a timeline of jobs and steps, per-step logs, metrics.
//
// On each event the view is fetched again (debounced) rather than folded here:
// the hub's fold is the one truth.  Elements are kept per job and step and
// updated in place, so open log panels, their scroll and search survive.

import { plainText, senderText } from "../ansi.js";
import { ApiError, deploymentPath, getJSON } from "../api.js";
import {
  STATUS_ICONS,
  debounce,
  durationOf,
  formatDuration,
  h,
  parseTime,
  safeUrl,
  serial,
  shortCommit,
  statusBadge,
  timeAgo,
} from "../dom.js";
import { LogPanel } from "../logs.js";
import { absoluteTime } from "../time.js";

const REFRESH_DEBOUNCE_MS = 80;
const MIN_BAR_PERCENT = 0.8;

function isActive(status) {
  return status === "running" || status === "pending";
}

function metaItem(label, value, node = null) {
  if (value === null || value === undefined || value === "") return null;
  return h("div", { class: "meta-item" }, h("dt", null, label), h("dd", null, node || senderText(value)));
}

function renderHeader(view) {
  const runUrl = safeUrl(view.run_url);
  const title = view.workflow_name || "Deployment";
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
      h("h1", { id: "deploy-title" }, senderText(title)),
      statusBadge(view.status, "badge-large deploy-status"),
    ),
    h(
      "p",
      { class: "deploy-when" },
      view.started_at ? ["Started ", timeAgo(view.started_at), " · "] : null,
      isActive(view.status) ? "running for " : "took ",
      durationOf(view, "deploy-duration"),
    ),
    h(
      "dl",
      { class: "meta" },
      metaItem("Branch", view.branch),
      metaItem("Commit", view.commit, view.commit ? h("span", { class: "mono", title: plainText(view.commit) }, senderText(shortCommit(view.commit))) : null),
      metaItem("Actor", view.actor),
      metaItem("Environment", view.environment),
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
  return section;
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
      shown = key.endsWith("_ms") ? formatDuration(value) : value.toLocaleString();
    } else if (value !== null && typeof value === "object") {
      shown = JSON.stringify(value);
    }
    list.append(h("div", { class: "metric" }, h("dt", null, senderText(key.replace(/_/g, " "))), h("dd", null, senderText(shown ?? "—"))));
  }
  section.append(list);
  return section;
}

/** Where each bar sits: percentages of the deployment's span, or null when untimed. */
function geometry(view, now) {
  const steps = view.jobs.flatMap((job) => job.steps);
  const starts = [parseTime(view.started_at), ...steps.map((s) => parseTime(s.started_at))].filter((t) => t !== null);
  if (!starts.length) return { span: null, start: null, now };
  const start = Math.min(...starts);
  const ends = steps.map((s) => parseTime(s.completed_at)).filter((t) => t !== null);
  let end = parseTime(view.completed_at);
  if (end === null || isActive(view.status) || steps.some((s) => isActive(s.status))) {
    end = Math.max(now, ...ends);
  }
  return { span: Math.max(end - start, 1), start, now };
}

function barStyle(step, geo, longest) {
  const started = parseTime(step.started_at);
  if (geo.span !== null && started !== null) {
    let ended = parseTime(step.completed_at);
    if (ended === null) ended = isActive(step.status) ? geo.now : started + (step.duration_ms || 0);
    const left = ((started - geo.start) / geo.span) * 100;
    const width = Math.max(((ended - started) / geo.span) * 100, MIN_BAR_PERCENT);
    return { left: Math.min(Math.max(left, 0), 100 - MIN_BAR_PERCENT), width: Math.min(width, 100), timed: true };
  }
  if (step.duration_ms !== null && step.duration_ms !== undefined && longest > 0) {
    return { left: 0, width: Math.max((step.duration_ms / longest) * 100, MIN_BAR_PERCENT), timed: false };
  }
  return { left: 0, width: 100, timed: false, unknown: true };
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
    this.bar = h("div", { class: "step-bar" });
    this.duration = h("span", { class: "step-duration" });
    this.error = h("pre", { class: "step-error", hidden: true });
    this.logBox = h("div", { class: "step-log", id: logId, hidden: true });
    this.el = h(
      "li",
      { class: "step", dataset: { job: job.name, step: step.name } },
      h("div", { class: "step-row" }, this.toggle, this.retries, h("div", { class: "step-track", "aria-hidden": "true" }, this.bar), this.duration),
      this.error,
      this.logBox,
    );
    this.deploymentId = deploymentId;
    this.jobName = job.name;
    this.open = false;
  }

  update(step, geo, longest) {
    this.step = step;
    this.el.dataset.status = step.status;
    this.el.className = `step status-${step.status}`;
    this.icon.textContent = STATUS_ICONS[step.status] || "○";
    this.statusText.textContent = `, ${step.status}`;
    this.retries.hidden = !step.retries;
    this.retries.textContent = step.retries ? `↻ ${step.retries}` : "";
    this.retries.title = step.retries ? `retried ${step.retries} time${step.retries === 1 ? "" : "s"}` : "";
    this.layout(geo, longest);
    const running = isActive(step.status) && step.started_at;
    if (running) {
      this.duration.dataset.since = step.started_at;
    } else {
      delete this.duration.dataset.since;
    }
    this.duration.textContent = running ? formatDuration(geo.now - parseTime(step.started_at)) : formatDuration(step.duration_ms);
    this.error.hidden = !step.error;
    if (this.error.dataset.text !== (step.error || "")) {
      this.error.dataset.text = step.error || "";
      this.error.replaceChildren(senderText(step.error || ""));
    }
  }

  layout(geo, longest) {
    if (!this.step) return;
    const bar = barStyle(this.step, geo, longest);
    this.bar.style.left = `${bar.left}%`;
    this.bar.style.width = `${bar.width}%`;
    this.bar.classList.toggle("bar-untimed", !bar.timed);
    this.bar.classList.toggle("bar-unknown", Boolean(bar.unknown));
  }

  setOpen(open) {
    this.open = open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.logBox.hidden = !open;
    if (open && !this.panel) {
      this.panel = new LogPanel({
        deploymentId: this.deploymentId,
        job: this.jobName,
        step: this.name,
        follow: isActive(this.step?.status),
        label: `Log of ${plainText(this.name)}`,
      });
      this.logBox.append(this.panel.el);
      this.panel.load();
    }
  }
}

class JobBlock {
  constructor(deploymentId, job) {
    this.deploymentId = deploymentId;
    this.rows = new Map();
    this.badge = h("span");
    this.duration = h("span", { class: "job-duration" });
    this.list = h("ol", { class: "steps" });
    this.el = h(
      "section",
      { class: "job", dataset: { job: job.name } },
      h("div", { class: "job-head" }, h("h3", { class: "job-name" }, senderText(job.name)), this.badge, this.duration),
      this.list,
    );
  }

  update(job, geo, longest) {
    this.el.dataset.status = job.status;
    this.badge.replaceChildren(statusBadge(job.status));
    this.duration.replaceChildren(durationOf(job));
    job.steps.forEach((step, index) => {
      let row = this.rows.get(step.name);
      if (!row) {
        row = new StepRow(this.deploymentId, job, step);
        this.rows.set(step.name, row);
      }
      row.update(step, geo, longest);
      if (this.list.children[index] !== row.el) this.list.insertBefore(row.el, this.list.children[index] || null);
    });
  }

  layout(geo, longest) {
    for (const row of this.rows.values()) row.layout(geo, longest);
  }
}

export function deploymentView(main, id, live) {
  let view = null;
  let disposed = false;
  const jobs = new Map();
  const head = h("div");
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
  const status = h("p", { class: "muted", role: "status" }, "Loading deployment…");
  main.replaceChildren(
    status,
    head,
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

  function longestStep() {
    return Math.max(0, ...view.jobs.flatMap((job) => job.steps.map((s) => s.duration_ms || 0)));
  }

  function render() {
    status.hidden = true;
    document.title = `${plainText(view.project)} · ${view.status} · Deployments`;
    head.replaceChildren(renderHeader(view));
    const geo = geometry(view, Date.now());
    const longest = longestStep();
    timelineEmpty.hidden = view.jobs.length > 0;
    view.jobs.forEach((job, index) => {
      let block = jobs.get(job.name);
      if (!block) {
        block = new JobBlock(id, job);
        jobs.set(job.name, block);
      }
      block.update(job, geo, longest);
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

  refresh().then(() => {
    if (!disposed) unsubscribe = live.subscribe("deployment", id, handlers, { since: view ? view.last_event_id : null });
  });

  return {
    tick() {
      if (!view) return;
      const geo = geometry(view, Date.now());
      const longest = longestStep();
      for (const block of jobs.values()) block.layout(geo, longest);
    },
    dispose() {
      disposed = true;
      scheduleRefresh.cancel();
      refreshLogs.cancel();
      if (unsubscribe) unsubscribe();
    },
  };
}
