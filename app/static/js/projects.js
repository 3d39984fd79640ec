// The "Project" filter every list page has: "All projects", the one chosen, every
// project the hub knows, and any project a live event names later (`add`).
import { plainText } from "./ansi.js";
import { getJSON } from "./api.js";
import { h } from "./dom.js";

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
