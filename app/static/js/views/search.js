// Search every retained log line: words (all must match), "quoted phrases",
// prefix*; each result shows where and when it was logged, its matches marked,
// and links to the line in its deployment's log.

import { senderText } from "../ansi.js";
import { ApiError, deploymentLink, getJSON } from "../api.js";
import { h, timeAgo } from "../dom.js";
import { projectPicker } from "../filters.js";

const PAGE_SIZE = 50;
const LEVELS = ["debug", "info", "warning", "error"];

/**
 * The text with each [start, end] span (in code points) in a <mark>.  The spans count the
 * text as the hub sent it, so it is cut first and each piece rendered as sender text.
 */
function marked(text, spans) {
  const points = Array.from(text);
  const piece = (from, to) => senderText(points.slice(from, to).join(""));
  const parts = [];
  let at = 0;
  for (const [start, end] of spans) {
    if (start > at) parts.push(piece(at, start));
    parts.push(h("mark", null, piece(start, end)));
    at = end;
  }
  if (at < points.length) parts.push(piece(at));
  return parts;
}

function result(item) {
  const where = [item.job, item.step].filter((part) => part !== null && part !== undefined).flatMap((part, index) => [index ? " / " : "", senderText(part)]);
  return h(
    "li",
    { class: `search-hit level-${item.level}`, dataset: { id: item.id, deployment: item.deployment_id } },
    h(
      "div",
      { class: "search-hit-head" },
      h("a", { href: deploymentLink(item.deployment_id), class: "mono" }, senderText(item.deployment_id)),
      h("span", { class: "muted" }, senderText(item.project)),
      where.length ? h("span", null, where) : null,
      h("span", { class: "muted" }, timeAgo(item.timestamp)),
      h("a", { href: item.link, class: "search-hit-link" }, "Open in log"),
    ),
    h("pre", { class: "search-hit-text" }, marked(item.text, item.match)),
  );
}

export function searchView(main, query) {
  const filters = {
    q: query.get("q") || "",
    project: query.get("project") || "",
    level: query.get("level") || "",
    job: query.get("job") || "",
    step: query.get("step") || "",
  };
  let cursor = null;
  let disposed = false;

  const input = h("input", {
    id: "search-q",
    name: "q",
    type: "search",
    value: filters.q,
    placeholder: 'e.g. econnrefused "exit code" migr*',
    maxlength: "500",
    autocomplete: "off",
    required: true,
  });
  const { select: projectSelect } = projectPicker({ id: "search-project", name: "project" }, filters.project);
  const levelSelect = h("select", { id: "search-level", name: "level" }, h("option", { value: "" }, "Any level"), LEVELS.map((l) => h("option", { value: l }, l)));
  levelSelect.value = filters.level;
  const list = h("ol", { class: "search-hits" });
  const status = h("p", { class: "muted", role: "status", hidden: true });
  const more = h("button", { type: "button", class: "button", hidden: true, onclick: () => load(false) }, "Load more");
  const showStatus = (text, kind = "muted") => {
    status.className = kind;
    status.textContent = text;
    status.hidden = !text;
  };

  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", null, "Search logs"),
      h("p", { class: "muted" }, 'Every retained log line and error message, newest first. All words must match; "quoted words" match as a phrase; prefix* matches words that start so.'),
    ),
    h(
      "form",
      {
        class: "card filters search-form",
        role: "search",
        "aria-label": "Search logs",
        onsubmit: (event) => {
          event.preventDefault();
          apply();
        },
      },
      h("label", { for: "search-q", class: "search-words" }, "Words", input),
      h("label", { for: "search-project" }, "Project", projectSelect),
      h("label", { for: "search-level" }, "Level", levelSelect),
      h("button", { type: "submit", class: "button" }, "Search"),
    ),
    status,
    h("div", { class: "card table-card" }, list, more),
  );

  let generation = 0;
  async function load(first = true) {
    if (!filters.q) {
      list.replaceChildren();
      more.hidden = true;
      showStatus("Type some words to search every log.");
      return;
    }
    const mine = first ? ++generation : generation;
    if (first) showStatus("Searching…");
    let answer;
    try {
      answer = await getJSON("logs/search", { ...filters, limit: PAGE_SIZE, cursor: first ? null : cursor });
    } catch (error) {
      if (disposed || mine !== generation) return;
      list.replaceChildren();
      more.hidden = true;
      const refused = error instanceof ApiError && error.status === 422;
      showStatus(refused ? error.message : `Could not search: ${error.message}`, refused ? "callout callout-warning" : "muted");
      return;
    }
    if (disposed || mine !== generation) return;
    const items = answer.items.map(result);
    if (first) list.replaceChildren(...items);
    else list.append(...items);
    cursor = answer.next_cursor;
    more.hidden = !cursor;
    if (!list.children.length) showStatus("No log line matches.");
    else if (answer.truncated) showStatus("The search stopped at its bound; load more to look further back.");
    else showStatus("");
  }

  function apply() {
    filters.q = input.value.trim();
    filters.project = projectSelect.value;
    filters.level = levelSelect.value;
    const params = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/search${params.toString() ? `?${params}` : ""}`);
    load();
  }
  projectSelect.addEventListener("change", apply);
  levelSelect.addEventListener("change", apply);
  load();
  if (!filters.q) input.focus();

  return {
    dispose() {
      disposed = true;
    },
  };
}
