// Failures across deployments, grouped by signature (the failing line with its
// details taken out), most frequent first: what breaks most, where, since when.

import { deploymentLink, getJSON } from "../api.js";
import { debounce, formatAbsolute, h, timeAgo } from "../dom.js";
import { watchProjects } from "./watch.js";

const WINDOWS = [7, 30, 90, 365];
const PAGE_SIZE = 25;

function group(item) {
  const steps = item.steps.map((s) => `${s.job ?? "—"} / ${s.step ?? "—"}${item.steps.length > 1 ? ` (${s.count})` : ""}`);
  return h(
    "li",
    { class: "card failure-group", dataset: { signature: item.signature } },
    h(
      "div",
      { class: "failure-group-head" },
      h("span", { class: "failure-count", title: `${item.count} failed deployments` }, `${item.count}×`),
      h("pre", { class: "failure-text", title: item.pattern }, item.sample || item.pattern),
    ),
    h(
      "dl",
      { class: "meta failure-meta" },
      h("div", { class: "meta-item" }, h("dt", null, "Projects"), h("dd", null, item.projects.join(", "))),
      h("div", { class: "meta-item" }, h("dt", null, "Steps"), h("dd", null, steps.join(", "))),
      h("div", { class: "meta-item" }, h("dt", null, "First seen"), h("dd", { title: formatAbsolute(item.first_seen) }, timeAgo(item.first_seen))),
      h("div", { class: "meta-item" }, h("dt", null, "Last seen"), h("dd", { title: formatAbsolute(item.last_seen) }, timeAgo(item.last_seen))),
      h(
        "div",
        { class: "meta-item" },
        h("dt", null, "Latest"),
        h("dd", null, item.deployments.map((id, index) => [index ? ", " : "", h("a", { href: deploymentLink(id), class: "mono" }, id)])),
      ),
    ),
  );
}

export function failuresView(main, live, query) {
  let days = Number(query.get("days")) || 30;
  if (!WINDOWS.includes(days)) days = 30;
  let project = query.get("project") || "";
  let cursor = null;
  let disposed = false;

  const windowSelect = h("select", { id: "failures-window" }, WINDOWS.map((d) => h("option", { value: String(d) }, d === 365 ? "Last year" : `Last ${d} days`)));
  windowSelect.value = String(days);
  const projectSelect = h("select", { id: "failures-project" }, h("option", { value: "" }, "All projects"));
  if (project) projectSelect.append(h("option", { value: project }, project));
  projectSelect.value = project;
  const list = h("ol", { class: "failure-groups" });
  const status = h("p", { class: "muted", role: "status" }, "Loading failures…");
  const more = h("button", { type: "button", class: "button", hidden: true, onclick: () => load(false) }, "Load more");

  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", null, "Failures"),
      h("p", { class: "muted" }, "Failed deployments grouped by the line that explains them, with times, ids and numbers taken out; the most frequent first."),
    ),
    h(
      "form",
      { class: "card filters", "aria-label": "Failures window", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "failures-window" }, "Window", windowSelect),
      h("label", { for: "failures-project" }, "Project", projectSelect),
    ),
    status,
    list,
    more,
  );

  getJSON("projects")
    .then((answer) => {
      for (const p of answer.projects) if (p.project !== project) projectSelect.append(h("option", { value: p.project }, p.project));
    })
    .catch(() => {});

  let generation = 0;
  async function load(first = true) {
    const mine = first ? ++generation : generation;
    let answer;
    try {
      answer = await getJSON("failures", { days, project, limit: PAGE_SIZE, cursor: first ? null : cursor });
    } catch (error) {
      if (disposed || mine !== generation) return;
      status.hidden = false;
      status.textContent = `Could not load failures: ${error.message}`;
      return;
    }
    if (disposed || mine !== generation) return;
    const items = answer.items.map(group);
    if (first) list.replaceChildren(...items);
    else list.append(...items);
    cursor = answer.next_cursor;
    more.hidden = !cursor;
    status.hidden = list.children.length > 0;
    status.textContent = list.children.length ? "" : "No failures in this window.";
  }

  function applyControls() {
    days = Number(windowSelect.value);
    project = projectSelect.value;
    const params = new URLSearchParams({ days: String(days) });
    if (project) params.set("project", project);
    history.replaceState(null, "", `#/failures?${params}`);
    load();
  }
  windowSelect.addEventListener("change", applyControls);
  projectSelect.addEventListener("change", applyControls);

  const soon = debounce(load, 1500);
  const watch = watchProjects(live, {
    onEvent(event) {
      if (event.type === "deployment_completed" && event.payload && event.payload.status === "failure") soon();
    },
    onNewProject: () => {},
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
