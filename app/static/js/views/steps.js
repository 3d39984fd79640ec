// Step trends per project: the slowest steps, the ones that fail most, and the
// ones that got slower (p50 up by more than half against the window before).

import { plainText, senderText } from "../ansi.js";
import { getJSON } from "../api.js";
import { debounce, formatDuration, h, number, percent } from "../dom.js";
import { pageHead, projectPicker, windowPicker } from "../filters.js";
import { watchAll } from "./watch.js";

const WINDOWS = [7, 30, 90];
const TOP = 5;

function stepName(item) {
  return [senderText(item.job), " / ", senderText(item.step)];
}

function table(caption, rows, columns) {
  if (!rows.length) return h("div", { class: "trend-table" }, h("h3", null, caption), h("p", { class: "muted" }, "None."));
  return h(
    "div",
    { class: "trend-table scroll-x" },
    h(
      "table",
      null,
      h("caption", null, caption),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Step"), columns.map(([title]) => h("th", { scope: "col", class: "num" }, title)))),
      h(
        "tbody",
        null,
        rows.map((item) =>
          h(
            "tr",
            { dataset: { job: item.job, step: item.step } },
            h("th", { scope: "row" }, stepName(item)),
            columns.map(([, value]) => h("td", { class: "num" }, value(item))),
          ),
        ),
      ),
    ),
  );
}

const RUNS = ["Runs", (i) => number(i.runs)];
const P50 = ["p50", (i) => formatDuration(i.p50_ms)];
const P95 = ["p95", (i) => formatDuration(i.p95_ms)];
const FAILED = ["Failed", (i) => `${number(i.failures)} (${percent(i.failure_rate)})`];
const FLAKY = ["Flaky", (i) => number(i.flaky)];
const BEFORE = ["p50 before", (i) => formatDuration(i.previous.p50_ms)];

function projectCard(project, items) {
  const slowest = items.filter((i) => i.p50_ms !== null).sort((a, b) => b.p50_ms - a.p50_ms).slice(0, TOP);
  const failing = items
    .filter((i) => i.failures > 0 || i.flaky > 0)
    .sort((a, b) => b.failure_rate - a.failure_rate || b.failures - a.failures || b.flaky - a.flaky)
    .slice(0, TOP);
  const regressed = items.filter((i) => i.regressed).sort((a, b) => b.p50_ms / b.previous.p50_ms - a.p50_ms / a.previous.p50_ms);
  return h(
    "section",
    { class: "card trend-card", dataset: { project }, "aria-label": `Steps of ${plainText(project)}` },
    h("h2", null, senderText(project)),
    h(
      "div",
      { class: "trend-grid" },
      table("Slowest", slowest, [P50, P95, RUNS]),
      table("Failing most", failing, [FAILED, FLAKY, RUNS]),
      table("Got slower", regressed, [P50, BEFORE, RUNS]),
    ),
  );
}

export function stepsView(main, live, query) {
  let days = Number(query.get("days")) || 30;
  if (!WINDOWS.includes(days)) days = 30;
  let project = query.get("project") || "";
  let disposed = false;

  const windowSelect = windowPicker("steps-window", WINDOWS, days);
  const { select: projectSelect, add: addProjectOption } = projectPicker({ id: "steps-project" }, project);
  const status = h("p", { class: "muted", role: "status" }, "Loading steps…");
  const body = h("div", { class: "trends" });

  main.replaceChildren(
    ...pageHead(
      "Steps",
      "Per project: the slowest steps, the ones that fail most (flaky: failed, then passed on a re-run of the same commit) and the ones whose median grew by more than half since the window before.",
      "Steps window",
      [["Window", windowSelect], ["Project", projectSelect]],
    ),
    status,
    body,
  );

  let generation = 0;
  async function load() {
    const mine = ++generation;
    let answer;
    try {
      answer = await getJSON("steps", { days, project });
    } catch (error) {
      if (disposed || mine !== generation) return;
      status.hidden = false;
      status.textContent = `Could not load steps: ${error.message}`;
      return;
    }
    if (disposed || mine !== generation) return;
    const byProject = new Map();
    for (const item of answer.steps) {
      if (!byProject.has(item.project)) byProject.set(item.project, []);
      byProject.get(item.project).push(item);
    }
    body.replaceChildren(...[...byProject].map(([name, items]) => projectCard(name, items)));
    status.hidden = byProject.size > 0 && !answer.truncated;
    status.textContent = !byProject.size ? "No finished steps in this window." : answer.truncated ? "Only the most recent deployments of this window were counted." : "";
  }

  function applyControls() {
    days = Number(windowSelect.value);
    project = projectSelect.value;
    const params = new URLSearchParams({ days: String(days) });
    if (project) params.set("project", project);
    history.replaceState(null, "", `#/steps?${params}`);
    load();
  }
  windowSelect.addEventListener("change", applyControls);
  projectSelect.addEventListener("change", applyControls);

  const soon = debounce(load, 2000);
  const watch = watchAll(live, {
    onEvent(event) {
      addProjectOption(event.project);
      if (event.type === "deployment_completed" && (!project || event.project === project)) soon();
    },
    onReset: load,
  });
  load();

  return {
    dispose() {
      disposed = true;
      soon.cancel();
      watch.stop();
    },
  };
}
