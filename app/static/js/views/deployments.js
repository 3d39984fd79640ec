// Deployment history: newest first, filtered by project, status, environment and
// branch (the read API filters; the page only decides whether a row changed live
// still belongs), with rows that update (and appear) live and running durations that
// tick.

import { plainText, senderText } from "../ansi.js";
import { deploymentPath, getJSON } from "../api.js";
import { MISSING, debounce, durationOf, h, serial, shortCommit, staleBadge, statusBadge, timeAgo } from "../dom.js";
import { isOpen } from "../stale.js";
import { projectPicker } from "../filters.js";
import { watchAll } from "./watch.js";

const PAGE_SIZE = 50;
const STATUSES = ["pending", "running", "success", "failure", "cancelled", "skipped"];

function row(item) {
  const link = `#/deployments/${encodeURIComponent(item.deployment_id)}`;
  return h(
    "tr",
    {
      dataset: {
        id: item.deployment_id,
        status: item.status,
        started: item.started_at || "",
        ...(isOpen(item.status) ? { staleNews: item.last_news_at || "", staleTold: String(Boolean(item.stale)) } : {}),
      },
    },
    h("td", { "data-label": "Status" }, h("span", { class: "badges" }, statusBadge(item.status), isOpen(item.status) ? staleBadge(item.last_news_at, item.stale) : null)),
    h("td", { "data-label": "Project" }, h("a", { href: `#/deployments?project=${encodeURIComponent(item.project)}` }, senderText(item.project))),
    h("td", { "data-label": "Deployment" }, h("a", { href: link, class: "mono" }, senderText(item.deployment_id))),
    h("td", { "data-label": "Environment" }, item.environment ? senderText(item.environment) : MISSING),
    h("td", { "data-label": "Branch" }, item.branch ? senderText(item.branch) : MISSING),
    // the dash of a missing commit is the page's, not set in the commit's monospace font
    h("td", { "data-label": "Commit", title: item.commit ? plainText(item.commit) : null }, item.commit ? h("span", { class: "mono" }, senderText(shortCommit(item.commit))) : MISSING),
    h("td", { "data-label": "Actor" }, item.actor ? senderText(item.actor) : MISSING),
    h("td", { "data-label": "Started" }, item.started_at ? timeAgo(item.started_at) : MISSING),
    h("td", { "data-label": "Duration", class: "num" }, durationOf(item)),
  );
}

function matches(item, filters) {
  return (
    (!filters.project || item.project === filters.project) &&
    (!filters.status || item.status === filters.status) &&
    (!filters.branch || item.branch === filters.branch) &&
    (!filters.environment || item.environment === filters.environment)
  );
}

export function deploymentsView(main, live, query) {
  const filters = {
    project: query.get("project") || "",
    status: query.get("status") || "",
    branch: query.get("branch") || "",
    environment: query.get("environment") || "",
  };
  let cursor = null;
  let disposed = false;

  const { select: projectSelect, add: addProjectOption } = projectPicker({ id: "filter-project", name: "project" }, filters.project);
  const statusSelect = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s }, s)),
  );
  statusSelect.value = filters.status;
  const branchInput = h("input", { id: "filter-branch", name: "branch", type: "search", placeholder: "any branch", value: filters.branch, maxlength: "200" });
  const environmentSelect = h("select", { id: "filter-environment", name: "environment" }, h("option", { value: "" }, "Any environment"));
  // shown once some deployment names an environment (or the address asks for one); the
  // options are GET /api/environments's names in stage order, then any name a row or a
  // live event brings that it did not list
  const environmentLabel = h("label", { for: "filter-environment", hidden: true }, "Environment", environmentSelect);
  const knownEnvironments = new Set();
  function addEnvironmentOption(name) {
    if (!name || knownEnvironments.has(name)) return;
    knownEnvironments.add(name);
    environmentSelect.append(h("option", { value: name }, plainText(name)));
    environmentLabel.hidden = false;
  }
  addEnvironmentOption(filters.environment);
  environmentSelect.value = filters.environment;
  const tbody = h("tbody");
  const status = h("p", { class: "muted", role: "status", hidden: true });
  const showStatus = (text) => {
    status.textContent = text;
    status.hidden = !text;
  };
  const more = h("button", { type: "button", class: "button", hidden: true, onclick: () => loadPage(false) }, "Load more");

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "History"), h("p", { class: "muted" }, "Every deployment, newest first.")),
    h(
      "form",
      { class: "card filters", role: "search", "aria-label": "Filter deployments", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "filter-project" }, "Project", projectSelect),
      h("label", { for: "filter-status" }, "Status", statusSelect),
      environmentLabel,
      h("label", { for: "filter-branch" }, "Branch", branchInput),
    ),
    h(
      "div",
      { class: "card table-card" },
      h(
        "table",
        { class: "deployments" },
        h("caption", { class: "sr-only" }, "Deployments, newest first"),
        h(
          "thead",
          null,
          h("tr", null, ["Status", "Project", "Deployment", "Environment", "Branch", "Commit", "Actor", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t))),
        ),
        tbody,
      ),
      status,
      more,
    ),
  );

  getJSON("environments")
    .then((answer) => {
      for (const name of answer.environment_names) addEnvironmentOption(name);
      // the hub's stage order (development … production) first, then names only rows brought
      const rank = new Map(answer.environment_names.map((name, i) => [name, i]));
      const options = [...environmentSelect.options].slice(1);
      options.sort((a, b) => (rank.get(a.value) ?? rank.size) - (rank.get(b.value) ?? rank.size));
      environmentSelect.append(...options);
      environmentSelect.value = filters.environment;
    })
    .catch(() => {});

  let generation = 0; // a newer first page makes older answers moot
  async function loadPage(first) {
    const mine = first ? ++generation : generation;
    let answer;
    try {
      answer = await getJSON("deployments", { ...filters, limit: PAGE_SIZE, cursor: first ? null : cursor });
    } catch (error) {
      showStatus(`Could not load deployments: ${error.message}`);
      return;
    }
    if (disposed || mine !== generation) return;
    for (const item of answer.deployments) addEnvironmentOption(item.environment);
    const rows = answer.deployments.map(row);
    if (first) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    // with an environment, the hub reads a bounded number of rows per answer: a page may
    // hold fewer rows than asked for (none, even) and still have a cursor to go on from
    cursor = answer.next_cursor;
    more.hidden = !cursor;
    showEmpty();
  }

  function showEmpty() {
    if (tbody.children.length) showStatus("");
    else if (cursor) showStatus("None among the latest deployments read; “Load more” looks further back.");
    else showStatus("No deployments match these filters.");
  }

  function applyFilters() {
    filters.project = projectSelect.value;
    filters.status = statusSelect.value;
    filters.environment = environmentSelect.value;
    filters.branch = branchInput.value.trim();
    const params = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const text = params.toString();
    history.replaceState(null, "", `#/deployments${text ? `?${text}` : ""}`);
    loadPage(true);
  }
  projectSelect.addEventListener("change", applyFilters);
  statusSelect.addEventListener("change", applyFilters);
  environmentSelect.addEventListener("change", applyFilters);
  branchInput.addEventListener("input", debounce(applyFilters, 300));

  // Live: fetch each changed deployment and put its row in place.
  const changed = new Set();
  const update = serial(async () => {
    const ids = [...changed];
    changed.clear();
    for (const id of ids) {
      let item;
      try {
        item = await getJSON(deploymentPath(id));
      } catch {
        continue;
      }
      if (disposed) return;
      addEnvironmentOption(item.environment);
      const existing = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      if (!matches(item, filters)) {
        existing?.remove();
        continue;
      }
      const fresh = row(item);
      if (existing) existing.replaceWith(fresh);
      else {
        const after = [...tbody.children].find((tr) => (tr.dataset.started || "") < (item.started_at || ""));
        if (after) tbody.insertBefore(fresh, after);
        else if (!cursor) tbody.append(fresh);
      }
    }
    showEmpty();
  });
  const soon = debounce(update, 150);

  const watch = watchAll(live, {
    onEvent(event) {
      addProjectOption(event.project);
      addEnvironmentOption(event.payload?.environment);
      if (!event.deployment_id || (filters.project && event.project !== filters.project)) return;
      changed.add(event.deployment_id);
      soon();
    },
    onReset: () => loadPage(true),
  });
  loadPage(true);

  return {
    dispose() {
      disposed = true;
      soon.cancel();
      watch.stop();
    },
  };
}
