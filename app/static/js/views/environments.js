// Environments: a matrix of projects × environments, each cell what the environment runs
// (its last successful deployment: version or commit, ref, who, since when) and what is on
// its way there, kept current by the one subscription to every project's lifecycle events.

import { plainText, senderText } from "../ansi.js";
import { getJSON } from "../api.js";
import { MISSING, debounce, h, safeUrl, serial, shortCommit, staleBadge, statusBadge, timeAgo } from "../dom.js";
import { isOpen } from "../stale.js";
import { overviewTabs } from "./overview.js";
import { watchAll } from "./watch.js";

function deploymentLink(ref, text) {
  return h("a", { href: `#/deployments/${encodeURIComponent(ref.deployment_id)}`, class: "mono" }, senderText(text));
}

/** What a deployment deployed, in the fewest words: version, else commit, else its id. */
function what(ref) {
  if (ref.version) return ref.version;
  if (ref.commit) return shortCommit(ref.commit);
  return ref.deployment_id;
}

function cell(state, project, environment) {
  // data-label: the environment's name above each block at phone width, without escape codes
  const label = plainText(environment);
  if (!state) return h("td", { class: "env-cell env-none", "data-label": label, dataset: { state: "none", project, environment } }, h("span", { class: "muted" }, MISSING));
  const current = state.current;
  const progress = state.in_progress;
  const latest = state.latest;
  const failedSince = latest && latest.status === "failure" && (!current || latest.deployment_id !== current.deployment_id) ? latest : null;
  const url = current ? safeUrl(current.environment_url) : null;
  const tone = progress ? "running" : failedSince ? "failure" : current ? "success" : "pending";
  return h(
    "td",
    { class: `env-cell env-${tone}`, "data-label": label, dataset: { state: tone, project: state.project, environment: state.environment } },
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
            current.branch ? h("span", { class: "chip", title: plainText(current.branch) }, senderText(current.branch)) : null,
          ),
          h(
            "p",
            { class: "env-when muted" },
            state.since ? timeAgo(state.since) : MISSING,
            current.actor ? [" · ", senderText(current.actor)] : null,
            current.version && current.commit ? [" · ", h("span", { class: "mono", title: plainText(current.commit) }, senderText(shortCommit(current.commit)))] : null,
          ),
          url ? h("p", { class: "env-url" }, h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, new URL(url).host)) : null,
        )
      : h("p", { class: "env-what muted" }, "Nothing deployed successfully yet"),
    progress
      ? h(
          "p",
          { class: "env-progress", dataset: isOpen(progress.status) ? { staleNews: progress.last_news_at || "", staleTold: String(Boolean(progress.stale)) } : {} },
          h("span", { class: "badges" }, statusBadge(progress.status), isOpen(progress.status) ? staleBadge(progress.last_news_at, progress.stale) : null),
          " ",
          deploymentLink(progress, what(progress)),
          progress.actor ? h("span", { class: "muted" }, " · ", senderText(progress.actor)) : null,
        )
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
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Project"), names.map((name) => h("th", { scope: "col" }, senderText(name))))),
        h(
          "tbody",
          null,
          answer.projects.map((project) =>
            h(
              "tr",
              { dataset: { project } },
              h("th", { scope: "row" }, h("a", { href: `#/deployments?project=${encodeURIComponent(project)}` }, senderText(project))),
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
    render(answer);
  });
  const soon = debounce(reload, 250);
  // every project's lifecycle events, a project's first one included: a project that starts
  // naming environments shows up without polling
  const watch = watchAll(live, {
    onEvent: () => soon(),
    onReset: () => reload(),
  });
  reload();

  return {
    dispose() {
      disposed = true;
      soon.cancel();
      watch.stop();
    },
  };
}
