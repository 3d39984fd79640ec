// Failures across deployments, grouped by signature (the failing line with its
// details taken out), most frequent first: what breaks most, where, since when.

import { plainText, senderText } from "../ansi.js";
import { deploymentLink, getJSON } from "../api.js";
import { MISSING, count, debounce, h, number, timeAgo } from "../dom.js";
import { pageHead, projectPicker, windowPicker } from "../filters.js";
import { watchAll } from "./watch.js";

const WINDOWS = [7, 30, 90, 365];
const PAGE_SIZE = 25;

/** Sender texts, one after another: "a, b, c". */
function listed(values, node) {
  return values.map((value, index) => [index ? ", " : "", node(value)]);
}

function group(item) {
  const several = item.steps.length > 1;
  const step = (s) => [senderText(s.job ?? MISSING), " / ", senderText(s.step ?? MISSING), several ? ` (${number(s.count)})` : ""];
  return h(
    "li",
    { class: "card failure-group", dataset: { signature: item.signature } },
    h(
      "div",
      { class: "failure-group-head" },
      h("span", { class: "failure-count", title: count(item.count, "failed deployment") }, `${number(item.count)}×`),
      h("pre", { class: "failure-text", title: plainText(item.pattern) }, senderText(item.sample || item.pattern)),
    ),
    h(
      "dl",
      { class: "meta failure-meta" },
      h("div", { class: "meta-item" }, h("dt", null, "Projects"), h("dd", null, listed(item.projects, senderText))),
      h("div", { class: "meta-item" }, h("dt", null, "Steps"), h("dd", null, listed(item.steps, step))),
      h("div", { class: "meta-item" }, h("dt", null, "First seen"), h("dd", null, timeAgo(item.first_seen))),
      h("div", { class: "meta-item" }, h("dt", null, "Last seen"), h("dd", null, timeAgo(item.last_seen))),
      h(
        "div",
        { class: "meta-item" },
        h("dt", null, "Latest"),
        h("dd", null, listed(item.deployments, (id) => h("a", { href: deploymentLink(id), class: "mono" }, senderText(id)))),
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

  const windowSelect = windowPicker("failures-window", WINDOWS, days);
  const { select: projectSelect, add: addProjectOption } = projectPicker({ id: "failures-project" }, project);
  const list = h("ol", { class: "failure-groups" });
  const status = h("p", { class: "muted", role: "status" }, "Loading failures…");
  const more = h("button", { type: "button", class: "button", hidden: true, onclick: () => load(false) }, "Load more");

  main.replaceChildren(
    ...pageHead(
      "Failures",
      "Failed deployments grouped by the line that explains them, with times, ids and numbers taken out; the most frequent first.",
      "Failures window",
      [["Window", windowSelect], ["Project", projectSelect]],
    ),
    status,
    list,
    more,
  );

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
  const watch = watchAll(live, {
    onEvent(event) {
      addProjectOption(event.project);
      if (event.type === "deployment_completed" && event.payload && event.payload.status === "failure" && (!project || event.project === project)) soon();
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
