// What the list pages share above their content: a title with a line of explanation,
// and a form of filters (the window of days, the project, ...).
import { plainText } from "./ansi.js";
import { getJSON } from "./api.js";
import { h } from "./dom.js";

// "All projects", the one chosen, every project the hub knows, and any project a live
// event names later (`add`).
export function projectPicker(attributes, chosen) {
  const select = h("select", attributes, h("option", { value: "" }, "All projects"));
  const known = new Set();
  function add(name) {
    if (!name || known.has(name)) return;
    known.add(name);
    select.append(h("option", { value: name }, plainText(name)));
  }
  add(chosen);
  select.value = chosen || "";
  getJSON("projects")
    .then((answer) => {
      for (const p of answer.projects) add(p.project);
    })
    .catch(() => {});
  return { select, add };
}

// A "Window" select of day counts, `days` chosen.
export function windowPicker(id, windows, days) {
  const select = h("select", { id }, windows.map((d) => h("option", { value: String(d) }, d === 365 ? "Last year" : `Last ${d} days`)));
  select.value = String(days);
  return select;
}

// The page's head and its filters: `fields` are [label, select] pairs, each select with its id.
export function pageHead(title, explanation, formLabel, fields) {
  return [
    h("div", { class: "page-head" }, h("h1", null, title), h("p", { class: "muted" }, explanation)),
    h(
      "form",
      { class: "card filters", "aria-label": formLabel, onsubmit: (e) => e.preventDefault() },
      fields.map(([label, select]) => h("label", { for: select.id }, label, select)),
    ),
  ];
}
