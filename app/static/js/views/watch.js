// Listening to every project: one `subscribe_all` subscription (lifecycle types
// only) tells the list views about every deployment, of projects old and new, as
// it happens; nothing polls.

import { LIFECYCLE_TYPES } from "../live.js";

/**
 * Call onEvent for each lifecycle event of any project, onReset when the hub's
 * history no longer reaches back to where this page was (reload from the API).
 */
export function watchAll(live, { onEvent, onReset = () => {} }) {
  const stop = live.subscribe("all", null, { onEvent, onReset }, { types: LIFECYCLE_TYPES, quiet: true });
  return { stop };
}
