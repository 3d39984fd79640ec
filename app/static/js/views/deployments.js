// Deployment history: newest first, filtered by project, status, branch and
// environment, with rows that update (and appear) live and running durations that
// tick.  The read API filters by project, status and branch; the environment is
// filtered here (and also asked of the API, which may learn to filter by it).

import { plainText, senderText } from "../ansi.js";
import { ApiError, deploymentPath, getJSON } from "../api.js";
import { MISSING, debounce, durationOf, h, serial, shortCommit, staleBadge, statusBadge, timeAgo } from "../dom.js";
import { isOpen } from "../stale.js";
import { watchAll } from "./watch.js";

const PAGE_SIZE = 50;
/** Pages one "Load more" may read to find rows of the environment asked for. */
const MAX_PAGES_PER_LOAD = 10;
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
    h("td", { "data-label": "Branch" }, item.branch ? senderText(item.branch) : MISSING),
    h("td", { "data-label": "Environment" }, item.environment ? senderText(item.environment) : MISSING),
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

  const projectSelect = h("select", { id: "filter-project", name: "project" }, h("option", { value: "" }, "All projects"));
  if (filters.project) projectSelect.append(h("option", { value: filters.project }, plainText(filters.project)));
  projectSelect.value = filters.project;
  const statusSelect = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s }, s)),
  );
  statusSelect.value = filters.status;
  const branchInput = h("input", { id: "filter-branch", name: "branch", type: "search", placeholder: "any branch", value: filters.branch, maxlength: "200" });
  const environmentSelect = h("select", { id: "filter-environment", name: "environment" }, h("option", { value: "" }, "Any environment"));
  // shown once some sender names an environment (or the address asks for one)
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
      h("label", { for: "filter-branch" }, "Branch", branchInput),
      environmentLabel,
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
          h("tr", null, ["Status", "Project", "Deployment", "Branch", "Environment", "Commit", "Actor", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t))),
        ),
        tbody,
      ),
      status,
      more,
    ),
  );

  const knownProjects = new Set(filters.project ? [filters.project] : []);
  function addProjectOption(name) {
    if (!name || knownProjects.has(name)) return;
    knownProjects.add(name);
    projectSelect.append(h("option", { value: name }, plainText(name)));
  }
  getJSON("projects")
    .then((answer) => {
      for (const p of answer.projects) {
        addProjectOption(p.project);
        addEnvironmentOption(p.latest_deployment?.environment);
      }
    })
    .catch(() => {});

  // Ask the API to filter by environment too, until it says it does not know the parameter;
  // the rows are filtered here either way.
  let askEnvironment = true;
  async function fetchPage(from) {
    const params = { project: filters.project, status: filters.status, branch: filters.branch, limit: PAGE_SIZE, cursor: from };
    if (filters.environment && askEnvironment) params.environment = filters.environment;
    try {
      return await getJSON("deployments", params);
    } catch (error) {
      if (!params.environment || !(error instanceof ApiError) || !("environment" in error.details)) throw error;
      askEnvironment = false;
      return fetchPage(from);
    }
  }

  let generation = 0; // a newer first page makes older answers moot
  async function loadPage(first) {
    const mine = first ? ++generation : generation;
    let next = first ? null : cursor;
    let shown = 0;
    for (let page = 0; page < MAX_PAGES_PER_LOAD; page += 1) {
      let answer;
      try {
        answer = await fetchPage(next);
      } catch (error) {
        showStatus(`Could not load deployments: ${error.message}`);
        return;
      }
      if (disposed || mine !== generation) return;
      for (const item of answer.deployments) addEnvironmentOption(item.environment);
      const rows = answer.deployments.filter((item) => matches(item, filters)).map(row);
      if (first && page === 0) tbody.replaceChildren(...rows);
      else tbody.append(...rows);
      shown += rows.length;
      next = answer.next_cursor;
      if (!next || !filters.environment || shown >= PAGE_SIZE) break;
    }
    cursor = next;
    more.hidden = !cursor;
    showStatus(tbody.children.length ? "" : "No deployments match these filters.");
  }

  function applyFilters() {
    filters.project = projectSelect.value;
    filters.status = statusSelect.value;
    filters.branch = branchInput.value.trim();
    filters.environment = environmentSelect.value;
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
    showStatus(tbody.children.length ? "" : "No deployments match these filters.");
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
