// Listening to every project: the protocol subscribes by project, so the list
// views subscribe to each project the read API knows and look again now and
// then for projects that appeared since.

import { getJSON } from "../api.js";
import { LIFECYCLE_TYPES } from "../live.js";

const DISCOVER_EVERY_MS = 30000;
/** Leave room under the hub's per-connection limit for a deployment page's subscription. */
const MAX_PROJECT_SUBSCRIPTIONS = 90;

/**
 * Subscribe to `projects` (or, when null, every project) and call onEvent for each
 * lifecycle event; onNewProject when a project shows up that was not there before.
 */
export function watchProjects(live, { projects = null, onEvent, onNewProject = () => {}, onReset = () => {} }) {
  const stops = new Map();
  const handlers = { onEvent, onReset };
  let timer = null;

  function add(names) {
    let added = false;
    for (const name of names) {
      if (stops.has(name) || stops.size >= MAX_PROJECT_SUBSCRIPTIONS) continue;
      stops.set(name, live.subscribe("project", name, handlers, { types: LIFECYCLE_TYPES, quiet: true }));
      added = true;
    }
    return added;
  }

  async function discover(first) {
    try {
      const answer = await getJSON("projects");
      const added = add(answer.projects.map((p) => p.project));
      if (added && !first) onNewProject();
    } catch {
      // the hub may be restarting; the next round tries again
    }
  }

  if (projects) add(projects);
  else {
    discover(true);
    timer = setInterval(() => discover(false), DISCOVER_EVERY_MS);
  }
  return {
    add,
    stop() {
      clearInterval(timer);
      for (const stop of stops.values()) stop();
      stops.clear();
    },
  };
}
