// The dashboard's entry point: routes by URL fragment (so one server path serves
// every view, behind any prefix), keeps the connection state visible, and ticks
// running durations once a second.

import { ApiError, adoptTokenFromUrl, getJSON, setToken } from "./api.js";
import { h, tick } from "./dom.js";
import { Live } from "./live.js";
import { Notifier } from "./notify.js";
import { setStaleAfter } from "./stale.js";
import { zoneSwitch } from "./time.js";
import { deploymentView } from "./views/deployment.js";
import { deploymentsView } from "./views/deployments.js";
import { environmentsView } from "./views/environments.js";
import { failuresView } from "./views/failures.js";
import { metricsView } from "./views/metrics.js";
import { projectsView } from "./views/projects.js";
import { searchView } from "./views/search.js";
import { stepsView } from "./views/steps.js";

adoptTokenFromUrl();

const main = document.getElementById("main");
const connection = document.getElementById("connection");
const connectionText = connection.querySelector(".connection-text");
const notice = document.getElementById("notice");
const live = new Live();
const notifier = new Notifier(live);
let current = null;
let retryAt = null;

const STATE_TEXT = {
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  live: "Live",
};

function showConnection() {
  const state = live.state;
  connection.dataset.state = state;
  if (state === "offline") {
    const seconds = Math.max(0, Math.ceil(((retryAt || Date.now()) - Date.now()) / 1000));
    connectionText.textContent = seconds > 0 ? `Offline · retrying in ${seconds} s` : "Offline · retrying…";
  } else connectionText.textContent = STATE_TEXT[state] || state;
  connection.title = state === "live" ? "Receiving updates as they happen" : "Updates paused; the page catches up when the connection is back";
}

live.addEventListener("staleafter", (event) => {
  setStaleAfter(event.detail.seconds);
  tick(main);
  current?.tick?.();
});

live.addEventListener("state", (event) => {
  retryAt = event.detail.retryAt;
  showConnection();
});

function route() {
  const hash = window.location.hash || "#/";
  if (!hash.startsWith("#/")) return null; // in-page anchors such as the skip link
  const [path, search = ""] = hash.slice(1).split("?");
  const query = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { name: "projects", render: () => projectsView(main, live) };
  if (parts[0] === "environments" && parts.length === 1) return { name: "projects", title: "Environments", render: () => environmentsView(main, live) };
  if (parts[0] === "deployments" && parts.length === 1) return { name: "deployments", render: () => deploymentsView(main, live, query) };
  // `?job=&step=&line=` opens the deployment at one log line (ledger/links.py spells it too)
  if (parts[0] === "deployments" && parts.length === 2) return { name: "deployments", render: () => deploymentView(main, parts[1], live, query, notifier) };
  if (parts[0] === "metrics") return { name: "metrics", render: () => metricsView(main, live, query) };
  if (parts[0] === "failures") return { name: "failures", render: () => failuresView(main, live, query) };
  if (parts[0] === "search") return { name: "search", render: () => searchView(main, query) };
  if (parts[0] === "steps") return { name: "steps", render: () => stepsView(main, live, query) };
  return {
    name: null,
    render: () => {
      main.replaceChildren(h("h1", null, "Not found"), h("p", null, h("a", { href: "#/" }, "Back to the projects")));
      return null;
    },
  };
}

const TITLES = { projects: "Projects", deployments: "History", metrics: "Metrics", failures: "Failures", search: "Search", steps: "Steps" };

function navigate(initial = false) {
  const next = route();
  if (!next) return;
  current?.dispose?.();
  current = null;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === next.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${next.title || TITLES[next.name] || "Deployments"} · Deployments`;
  current = next.render();
  if (!initial) main.focus({ preventScroll: true });
}

function askForToken(message) {
  const input = h("input", { type: "password", id: "read-token", autocomplete: "off", required: true });
  notice.hidden = false;
  notice.replaceChildren(
    h(
      "form",
      {
        class: "token-form",
        onsubmit: (event) => {
          event.preventDefault();
          setToken(input.value.trim());
          notice.hidden = true;
          live.socket?.close();
          navigate();
        },
      },
      h("label", { for: "read-token" }, message),
      input,
      h("button", { type: "submit", class: "button" }, "Use token"),
    ),
  );
  input.focus();
}

async function checkAccess() {
  try {
    await getJSON("projects");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) askForToken("This hub needs a read token:");
  }
}

// The search box in the top bar opens the search page with its words.
const searchForm = document.getElementById("global-search");
searchForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  const words = searchForm.elements.q.value.trim();
  if (words) window.location.hash = `#/search?${new URLSearchParams({ q: words })}`;
});

window.addEventListener("hashchange", () => navigate());
setInterval(() => {
  tick(main);
  current?.tick?.();
  if (live.state === "offline") showConnection();
}, 1000);

zoneSwitch(document.getElementById("time-zone"));
showConnection();
navigate(true);
live.connect();
checkAccess();
