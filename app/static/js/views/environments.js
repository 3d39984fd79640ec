// Environments: a matrix of projects × environments, each cell what the environment runs
// (its last successful deployment: version or commit, ref, who, since when) and what is on
// its way there, kept current by the projects' subscriptions.

import { getJSON } from "../api.js";
import { debounce, h, safeUrl, serial, shortCommit, statusBadge, timeAgo } from "../dom.js";
import { overviewTabs } from "./overview.js";
import { watchProjects } from "./watch.js";

function deploymentLink(ref, text) {
  return h("a", { href: `#/deployments/${encodeURIComponent(ref.deployment_id)}`, class: "mono" }, text);
}

/** What a deployment deployed, in the fewest words: version, else commit, else its id. */
function what(ref) {
  if (ref.version) return ref.version;
  if (ref.commit) return shortCommit(ref.commit);
  return ref.deployment_id;
}

function cell(state, project, environment) {
  if (!state) return h("td", { class: "env-cell env-none", dataset: { state: "none", project, environment } }, h("span", { class: "muted" }, "—"));
  const current = state.current;
  const progress = state.in_progress;
  const latest = state.latest;
  const failedSince = latest && latest.status === "failure" && (!current || latest.deployment_id !== current.deployment_id) ? latest : null;
  const url = current ? safeUrl(current.environment_url) : null;
  const tone = progress ? "running" : failedSince ? "failure" : current ? "success" : "pending";
  return h(
    "td",
    { class: `env-cell env-${tone}`, dataset: { state: tone, project: state.project, environment: state.environment } },
    current
      ? h(
          "div",
          { class: "env-current" },
          h(
            "p",
            { class: "env-what" },
            statusBadge("success"),
            " ",
            deploymentLink(current, what(current)),
            current.branch ? h("span", { class: "chip" }, current.branch) : null,
          ),
          h(
            "p",
            { class: "env-when muted" },
            state.since ? timeAgo(state.since) : "—",
            current.actor ? ` · ${current.actor}` : "",
            current.version && current.commit ? h("span", { class: "mono", title: current.commit }, ` · ${shortCommit(current.commit)}`) : null,
          ),
          url ? h("p", { class: "env-url" }, h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, new URL(url).host)) : null,
        )
      : h("p", { class: "env-what muted" }, "Nothing deployed successfully yet"),
    progress
      ? h("p", { class: "env-progress" }, statusBadge(progress.status), " ", deploymentLink(progress, what(progress)), progress.actor ? h("span", { class: "muted" }, ` · ${progress.actor}`) : null)
      : null,
    failedSince && !progress
      ? h("p", { class: "env-failed" }, statusBadge("failure"), " ", deploymentLink(failedSince, what(failedSince)), " ", failedSince.completed_at ? timeAgo(failedSince.completed_at) : null)
      : null,
  );
}

export function environmentsView(main, live) {
  const status = h("p", { class: "muted", role: "status" }, "Loading environments…");
  const table = h("div", { class: "card table-card scroll-x", hidden: true });
  const note = h("p", { class: "callout callout-warning", hidden: true }, "Only the most recent deployments were read; older environments may be missing.");
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "Environments"), h("p", { class: "muted" }, "What each project runs in each environment, and what is on its way there, updated live.")),
    overviewTabs("environments"),
    status,
    note,
    table,
  );
  let disposed = false;

  function render(answer) {
    const names = answer.environment_names;
    const byKey = new Map(answer.environments.map((s) => [`${s.project}\u0000${s.environment}`, s]));
    note.hidden = !answer.truncated;
    if (!answer.environments.length) {
      status.hidden = false;
      status.textContent = "No deployment has named an environment yet. Deployments that do (GitHub and GitLab deployments, Flux, Argo CD, or an environment field) appear here.";
      table.hidden = true;
      return;
    }
    status.hidden = true;
    table.hidden = false;
    table.replaceChildren(
      h(
        "table",
        { class: "environments" },
        h("caption", { class: "sr-only" }, "Projects by environment: the current deployment of each"),
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Project"), names.map((name) => h("th", { scope: "col" }, name)))),
        h(
          "tbody",
          null,
          answer.projects.map((project) =>
            h(
              "tr",
              { dataset: { project } },
              h("th", { scope: "row" }, h("a", { href: `#/deployments?project=${encodeURIComponent(project)}` }, project)),
              names.map((name) => cell(byKey.get(`${project}\u0000${name}`), project, name)),
            ),
          ),
        ),
      ),
    );
  }

  const reload = serial(async () => {
    let answer;
    try {
      answer = await getJSON("environments");
    } catch (error) {
      status.hidden = false;
      status.textContent = `Could not load environments: ${error.message}`;
      return;
    }
    if (disposed) return;
    watch.add(answer.projects);
    render(answer);
  });
  const soon = debounce(reload, 250);
  const watch = watchProjects(live, {
    projects: [],
    onEvent: () => soon(),
    onReset: () => reload(),
  });
  // projects that start naming environments later are found by looking again now and then
  const discover = setInterval(() => reload(), 30000);
  reload();

  return {
    dispose() {
      disposed = true;
      clearInterval(discover);
      soon.cancel();
      watch.stop();
    },
  };
}
