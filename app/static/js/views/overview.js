// The overview's tabs: the projects' latest deployments, and the environments matrix.

import { h } from "../dom.js";

const TABS = [
  ["projects", "#/", "Projects"],
  ["environments", "#/environments", "Environments"],
];

export function overviewTabs(active) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Overview" },
    TABS.map(([name, href, text]) => h("a", { href, class: "tab", dataset: { tab: name }, "aria-current": name === active ? "page" : null }, text)),
  );
}
