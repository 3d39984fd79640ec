// Delivery metrics over a chosen window: deployment frequency, change failure
// rate, time to restore and duration percentiles, per project, as charts (Chart.js,
// loaded only when this page is opened) with the same numbers in a table.

import { plainText, senderText } from "../ansi.js";
import { ApiError, getJSON } from "../api.js";
import { MISSING, count, debounce, formatDuration, h, number, percent, percentNumber } from "../dom.js";
import { absoluteTime, zoneLabel, zoneName, zoneOffsetMinutes } from "../time.js";
import { pageHead, projectPicker, windowPicker } from "../filters.js";
import { watchAll } from "./watch.js";

const WINDOWS = [7, 30, 90, 365];
const COLOUR_NAMES = ["success", "failure", "other", "p50", "p90", "p95", "rate", "restore", "text", "grid"];
const DARK = window.matchMedia("(prefers-color-scheme: dark)");

/** The charts' colours, from the stylesheet's --chart-* properties of the theme in use. */
function chartColours() {
  const style = getComputedStyle(document.documentElement);
  return Object.fromEntries(COLOUR_NAMES.map((name) => [name, style.getPropertyValue(`--chart-${name}`).trim()]));
}
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif';

let chartLibrary = null;

function loadChartLibrary() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!chartLibrary) {
    chartLibrary = new Promise((resolve, reject) => {
      const script = h("script", { src: `${document.body.dataset.assets}/vendor/chart.umd.min.js` });
      script.addEventListener("load", () => resolve(window.Chart));
      script.addEventListener("error", () => {
        chartLibrary = null;
        script.remove();
        reject(new Error("the chart library did not load"));
      });
      document.head.append(script);
    });
  }
  return chartLibrary;
}

/** Hours or minutes, whichever reads better for the largest value. */
function timeUnit(values) {
  const largest = Math.max(0, ...values.filter((v) => typeof v === "number"));
  if (largest >= 2 * 3600000) return { name: "hours", ms: 3600000 };
  if (largest >= 2 * 60000) return { name: "minutes", ms: 60000 };
  return { name: "seconds", ms: 1000 };
}

function scaled(value, unit) {
  return typeof value === "number" ? Math.round((value / unit.ms) * 100) / 100 : null;
}

function kpi(label, value, hint) {
  return h("div", { class: "kpi" }, h("span", { class: "kpi-label" }, label), h("span", { class: "kpi-value" }, value), hint ? h("span", { class: "kpi-hint muted" }, hint) : null);
}

function chartCard(id, title, description) {
  const canvas = h("canvas", { id, role: "img", "aria-label": `${title}: ${description}` });
  return {
    canvas,
    el: h("section", { class: "card chart-card", "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), h("p", { class: "muted chart-note" }, description), h("div", { class: "chart-box" }, canvas)),
  };
}

function baseOptions(extra = {}) {
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    ...extra,
  };
}

export function metricsView(main, live, query) {
  let days = Number(query.get("days")) || 30;
  if (!WINDOWS.includes(days)) days = 30;
  let project = query.get("project") || "";
  // "" lets the hub choose (production when there is one); "*" counts every environment
  let environment = query.get("environment") || "";
  let disposed = false;
  let charts = [];

  const windowSelect = windowPicker("metrics-window", WINDOWS, days);
  const { select: projectSelect, add: addProjectOption } = projectPicker({ id: "metrics-project" }, project);
  const environmentSelect = h("select", { id: "metrics-environment" }, h("option", { value: "*" }, "All environments"));
  const status = h("p", { class: "muted", role: "status" }, "Loading metrics…");
  const body = h("div", { class: "metrics-body" });

  main.replaceChildren(
    ...pageHead(
      "Delivery metrics",
      "How often each project deploys, how often that fails, and how fast it recovers.",
      "Metrics window",
      [["Window", windowSelect], ["Project", projectSelect], ["Environment", environmentSelect]],
    ),
    status,
    body,
  );

  function destroyCharts() {
    for (const chart of charts) chart.destroy();
    charts = [];
  }

  /** The environments of the window, and the one counted ("*": every one). */
  function showEnvironments(data) {
    const names = [...new Set([...data.environments, ...(data.environment ? [data.environment] : [])])];
    environmentSelect.replaceChildren(h("option", { value: "*" }, "All environments"), ...names.map((name) => h("option", { value: name }, plainText(name))));
    environmentSelect.value = data.environment || "*";
  }

  let shown = null; // the data and library drawn last, to draw again in another theme

  function render(data, Chart) {
    shown = { data, Chart };
    destroyCharts();
    showEnvironments(data);
    const COLOURS = chartColours();
    Chart.defaults.font.family = FONT;
    Chart.defaults.color = COLOURS.text;
    Chart.defaults.borderColor = COLOURS.grid;
    const overall = data.overall;
    const projects = data.projects;
    const names = projects.map((p) => plainText(p.project));

    const kpis = h(
      "div",
      { class: "kpis" },
      kpi("Deployments per day", number(overall.per_day), `${count(overall.deployments, "deployment")} in ${count(days, "day")}`),
      kpi("Change failure rate", percent(overall.change_failure_rate), `${number(overall.statuses.failure || 0)} failed`),
      kpi("Median time to restore", formatDuration(overall.time_to_restore_ms.median), count(overall.time_to_restore_ms.count, "recovery", "recoveries")),
      kpi("Duration p50 / p95", `${formatDuration(overall.duration_ms.p50)} / ${formatDuration(overall.duration_ms.p95)}`, count(overall.duration_ms.count, "duration")),
    );

    const frequency = chartCard("chart-frequency", "Deployment frequency", `deployments started per day (days in ${zoneLabel()}), by outcome`);
    const failure = chartCard("chart-failure", "Change failure rate", "share of finished deployments that failed, per project");
    const restoreUnit = timeUnit(projects.map((p) => p.time_to_restore_ms.median));
    const restore = chartCard("chart-restore", "Time to restore", `median time from a failure to the next success, in ${restoreUnit.name}`);
    const durationUnit = timeUnit(projects.flatMap((p) => [p.duration_ms.p50, p.duration_ms.p90, p.duration_ms.p95]));
    const durations = chartCard("chart-durations", "Duration percentiles", `p50, p90 and p95 of finished deployments, in ${durationUnit.name}`);

    const table = h(
      "table",
      { class: "metrics-table" },
      h("caption", null, "Per project"),
      h(
        "thead",
        null,
        h("tr", null, ["Project", "Deployments", "Per day", "Change failure rate", "Median time to restore", "p50", "p90", "p95", "Failing since"].map((t) => h("th", { scope: "col" }, t))),
      ),
      h(
        "tbody",
        null,
        projects.map((p) =>
          h(
            "tr",
            { dataset: { project: p.project } },
            h("th", { scope: "row" }, senderText(p.project)),
            h("td", { class: "num" }, number(p.deployments)),
            h("td", { class: "num" }, number(p.per_day)),
            h("td", { class: "num" }, percent(p.change_failure_rate)),
            h("td", { class: "num" }, formatDuration(p.time_to_restore_ms.median)),
            h("td", { class: "num" }, formatDuration(p.duration_ms.p50)),
            h("td", { class: "num" }, formatDuration(p.duration_ms.p90)),
            h("td", { class: "num" }, formatDuration(p.duration_ms.p95)),
            h("td", null, absoluteTime(p.failing_since)),
          ),
        ),
      ),
    );

    body.replaceChildren(
      ...[
        kpis,
        data.truncated ? h("p", { class: "callout callout-warning" }, "Only the most recent deployments of this window were counted.") : null,
        h("div", { class: "chart-grid" }, frequency.el, failure.el, restore.el, durations.el),
        h("div", { class: "card table-card scroll-x" }, table),
      ].filter(Boolean),
    );

    const dayLabels = data.daily.map((d) => d.date.slice(5));
    const plots = [
      [frequency, {
        type: "bar",
        data: {
          labels: dayLabels,
          datasets: ["success", "failure", "other"].map((key) => ({ label: key, data: data.daily.map((d) => d[key]), backgroundColor: COLOURS[key], stack: "runs" })),
        },
        options: baseOptions({ scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 8 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }),
      }],
      [failure, {
        type: "bar",
        data: { labels: names, datasets: [{ label: "change failure rate", data: projects.map((p) => (p.change_failure_rate === null ? null : percentNumber(p.change_failure_rate))), backgroundColor: COLOURS.rate }] },
        options: baseOptions({
          indexAxis: "y",
          scales: { x: { beginAtZero: true, max: 100, ticks: { callback: (value) => `${value}%` } } },
          plugins: { ...baseOptions().plugins, tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${item.raw}%` } } },
        }),
      }],
      [restore, {
        type: "bar",
        data: { labels: names, datasets: [{ label: `median (${restoreUnit.name})`, data: projects.map((p) => scaled(p.time_to_restore_ms.median, restoreUnit)), backgroundColor: COLOURS.restore }] },
        options: baseOptions({ indexAxis: "y", scales: { x: { beginAtZero: true } } }),
      }],
      [durations, {
        type: "bar",
        data: {
          labels: names,
          datasets: ["p50", "p90", "p95"].map((key) => ({ label: key, data: projects.map((p) => scaled(p.duration_ms[key], durationUnit)), backgroundColor: COLOURS[key] })),
        },
        options: baseOptions({ scales: { y: { beginAtZero: true, title: { display: true, text: durationUnit.name } } } }),
      }],
    ];
    for (const [card, config] of plots) {
      const anything = config.data.datasets.some((set) => set.data.some((v) => v !== null && v !== 0));
      if (anything) charts.push(new Chart(card.canvas, config));
      else card.canvas.parentElement.replaceWith(h("p", { class: "chart-empty muted" }, "Nothing to show in this window yet."));
    }
  }

  // Days are counted in the zone the page shows times in: by its IANA name, or, when the
  // browser gives none or the hub does not know it, by the offset in effect now.
  let byOffset = !zoneName();
  async function fetchMetrics() {
    const zone = byOffset ? { utc_offset: zoneOffsetMinutes() } : { tz: zoneName() };
    try {
      return await getJSON("delivery-metrics", { days, project, environment, ...zone });
    } catch (error) {
      if (byOffset || !(error instanceof ApiError) || !("tz" in error.details)) throw error;
      byOffset = true;
      return getJSON("delivery-metrics", { days, project, environment, utc_offset: zoneOffsetMinutes() });
    }
  }

  let generation = 0;
  async function load() {
    const mine = ++generation;
    try {
      const [data, Chart] = await Promise.all([fetchMetrics(), loadChartLibrary()]);
      if (disposed || mine !== generation) return;
      status.hidden = true;
      render(data, Chart);
    } catch (error) {
      if (disposed || mine !== generation) return;
      status.hidden = false;
      status.textContent = `Could not load metrics: ${error.message}`;
    }
  }

  function applyControls(event) {
    days = Number(windowSelect.value);
    project = projectSelect.value;
    if (event?.currentTarget === environmentSelect) environment = environmentSelect.value;
    const params = new URLSearchParams({ days: String(days) });
    if (project) params.set("project", project);
    if (environment) params.set("environment", environment);
    history.replaceState(null, "", `#/metrics?${params}`);
    load();
  }
  windowSelect.addEventListener("change", applyControls);
  projectSelect.addEventListener("change", applyControls);
  environmentSelect.addEventListener("change", applyControls);

  const soon = debounce(load, 1000);
  const watch = watchAll(live, {
    onEvent(event) {
      addProjectOption(event.project);
      if (event.type.startsWith("deployment_") && (!project || event.project === project)) soon();
    },
    onReset: load,
  });
  // the theme follows the system's setting; the charts follow the theme
  const onScheme = () => {
    if (shown && !disposed) render(shown.data, shown.Chart);
  };
  DARK.addEventListener("change", onScheme);
  const onZone = () => {
    byOffset = !zoneName();
    load();
  };
  window.addEventListener("timezonechange", onZone);
  load();

  return {
    dispose() {
      disposed = true;
      soon.cancel();
      watch.stop();
      window.removeEventListener("timezonechange", onZone);
      DARK.removeEventListener("change", onScheme);
      destroyCharts();
    },
  };
}
