// Projects: each project's latest deployment, success rate, median duration and
// the trend of its recent durations, kept current by one subscription to every
// project's lifecycle events (a project nobody had heard of appears at once).

import { plainText, senderText } from "../ansi.js";
import { badgeUrl, getJSON } from "../api.js";
import {
  MISSING,
  count,
  debounce,
  durationOf,
  formatDuration,
  h,
  median,
  number,
  parseTime,
  percent,
  serial,
  shortCommit,
  staleBadge,
  statusBadge,
  svg,
  timeAgo,
} from "../dom.js";
import { isOpen, openUntil } from "../stale.js";
import { overviewTabs } from "./overview.js";
import { watchAll } from "./watch.js";

const TREND_LENGTH = 20;

function durationNow(row, now) {
  if (isOpen(row.status) && row.started_at) {
    return openUntil(row.status, row.last_news_at, now, row.stale) - parseTime(row.started_at);
  }
  return row.duration_ms;
}

function sparkline(rows) {
  const now = Date.now();
  const ordered = [...rows].reverse();
  const values = ordered.map((row) => durationNow(row, now) || 0);
  const longest = Math.max(1, ...values);
  const barWidth = 8;
  const height = 36;
  const chart = svg("svg", {
    class: "sparkline",
    viewBox: `0 0 ${TREND_LENGTH * barWidth} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `Durations of the last ${count(rows.length, "deployment")}, oldest first: ${values.map((v) => formatDuration(v)).join(", ")}`,
  });
  ordered.forEach((row, index) => {
    const barHeight = Math.max(2, (values[index] / longest) * (height - 2));
    chart.append(
      svg(
        "rect",
        {
          x: index * barWidth + 1,
          y: height - barHeight,
          width: barWidth - 2,
          height: barHeight,
          rx: 1.5,
          class: `spark-bar spark-${row.status}`,
        },
        svg("title", null, `${plainText(row.deployment_id)}: ${row.status}, ${formatDuration(values[index])}`),
      ),
    );
  });
  return chart;
}

function projectCard(project, trend, openBadge) {
  const latest = project.latest_deployment;
  const counts = project.counts || {};
  const decided = (counts.success || 0) + (counts.failure || 0);
  const finished = trend.filter((row) => row.status === "success" || row.status === "failure");
  const markdown = `![${plainText(project.project)} deployment](${badgeUrl(project.project)})`;
  const card = h(
    "article",
    {
      class: `card project-card status-${latest.status}`,
      dataset: { project: project.project, status: latest.status, ...(isOpen(latest.status) ? { staleNews: latest.last_news_at || "", staleTold: String(Boolean(latest.stale)) } : {}) },
    },
    h(
      "header",
      { class: "project-head" },
      h("h2", { class: "project-name" }, h("a", { href: `#/deployments?project=${encodeURIComponent(project.project)}` }, senderText(project.project))),
      h("span", { class: "badges" }, statusBadge(latest.status), isOpen(latest.status) ? staleBadge(latest.last_news_at, latest.stale) : null),
    ),
    h(
      "p",
      { class: "project-latest" },
      h("a", { href: `#/deployments/${encodeURIComponent(latest.deployment_id)}`, class: "mono" }, senderText(latest.deployment_id)),
      latest.branch ? h("span", { class: "chip", title: plainText(latest.branch) }, senderText(latest.branch)) : null,
      latest.commit ? h("span", { class: "chip mono", title: plainText(latest.commit) }, senderText(shortCommit(latest.commit))) : null,
    ),
    h(
      "p",
      { class: "project-when muted" },
      latest.started_at ? timeAgo(latest.started_at) : MISSING,
      " · ",
      durationOf(latest),
    ),
    h(
      "dl",
      { class: "stats" },
      h(
        "div",
        { class: "stat", title: `${number(counts.success || 0)} successful of ${number(decided)} finished` },
        h("dt", null, "Success rate"),
        h("dd", null, decided ? percent((counts.success || 0) / decided) : MISSING),
      ),
      h(
        "div",
        { class: "stat", title: `median of the last ${count(finished.length, "finished deployment")}` },
        h("dt", null, "Median duration"),
        h("dd", null, formatDuration(median(finished.map((row) => row.duration_ms)))),
      ),
      h("div", { class: "stat" }, h("dt", null, "Deployments"), h("dd", null, counts.total === undefined ? MISSING : number(counts.total))),
    ),
    h("figure", { class: "trend" }, sparkline(trend), h("figcaption", { class: "muted" }, `Last ${count(trend.length, "duration")}`)),
    h(
      "details",
      { class: "badge-snippet", open: openBadge },
      h("summary", null, "README badge"),
      h("img", { src: badgeUrl(project.project), alt: `${plainText(project.project)} deployment status`, height: "20" }),
      h("input", { type: "text", readonly: true, value: markdown, "aria-label": "Badge Markdown", class: "snippet", onfocus: (e) => e.target.select() }),
    ),
  );
  return card;
}

export function projectsView(main, live) {
  const status = h("p", { class: "muted", role: "status" }, "Loading projects…");
  const grid = h("div", { class: "project-grid" });
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "Projects"), h("p", { class: "muted" }, "The latest deployment of every project, updated live.")),
    overviewTabs("projects"),
    status,
    grid,
  );
  let projects = [];
  const trends = new Map();
  const pending = new Set();
  let disposed = false;

  async function loadTrend(name) {
    try {
      const answer = await getJSON("deployments", { project: name, limit: TREND_LENGTH });
      trends.set(name, answer.deployments);
    } catch {
      // keep the trend we had; the card still shows the latest deployment
    }
  }

  function render() {
    if (disposed) return;
    if (!projects.length) {
      status.hidden = false;
      status.textContent = "No deployments yet. Projects appear here as soon as a deployment is reported.";
    } else status.hidden = true;
    const open = new Set([...grid.querySelectorAll(".badge-snippet[open]")].map((el) => el.closest(".project-card").dataset.project));
    grid.replaceChildren(...projects.map((p) => projectCard(p, trends.get(p.project) || [], open.has(p.project))));
  }

  const reload = serial(async () => {
    const names = pending.size ? [...pending] : null;
    pending.clear();
    try {
      projects = (await getJSON("projects")).projects;
    } catch (error) {
      status.hidden = false;
      status.textContent = `Could not load projects: ${error.message}`;
      return;
    }
    const wanted = new Set(names || []);
    for (const project of projects) if (!names || !trends.has(project.project)) wanted.add(project.project);
    await Promise.all([...wanted].map(loadTrend));
    render();
  });
  const soon = debounce(reload, 250);

  reload();
  const watch = watchAll(live, {
    onEvent(event) {
      pending.add(event.project);
      if (projects.some((p) => p.project === event.project)) soon();
      else {
        soon.cancel(); // a project not on the page yet: no reason to wait
        reload();
      }
    },
    onReset: () => reload(),
  });
  return {
    tick() {
      for (const chart of grid.querySelectorAll(".project-card[data-status='running'] .trend")) {
        const name = chart.closest(".project-card").dataset.project;
        chart.firstElementChild.replaceWith(sparkline(trends.get(name) || []));
      }
    },
    dispose() {
      disposed = true;
      soon.cancel();
      watch.stop();
    },
  };
}
