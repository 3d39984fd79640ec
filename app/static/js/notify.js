// Desktop notifications for deployments someone is watching: they ask on a
// deployment's page (a click, never unprompted: the browser's permission prompt
// appears only then) and are told when it finishes, whichever page of the
// dashboard is open by then.  The watched deployments are kept for the tab
// (sessionStorage), so a reload keeps watching; one that finished while the page
// was away is announced when it comes back.

import { plainText, stripAnsi } from "./ansi.js";
import { deploymentPath, getJSON } from "./api.js";
import { formatDuration } from "./dom.js";
import { LIFECYCLE_TYPES } from "./live.js";
import { isOpen } from "./stale.js";

const STORAGE_KEY = "deploy-dashboard-notify";
const OUTCOMES = { success: "succeeded", failure: "failed", cancelled: "was cancelled", skipped: "was skipped" };

function load() {
  try {
    const ids = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

export class Notifier extends EventTarget {
  constructor(live) {
    super();
    this.live = live;
    this.watched = new Set(load());
    this.stopListening = null;
    if (this.watched.size && this.permission() === "granted") this.listen();
  }

  /** "granted", "denied", "default" (not asked yet) or "unsupported". */
  permission() {
    return "Notification" in window ? window.Notification.permission : "unsupported";
  }

  isWatching(id) {
    return this.watched.has(id);
  }

  /**
   * Watch a deployment; call only from a click. Asks for the browser's permission the first
   * time, and answers with it ("granted" means watching).
   */
  async watch(id) {
    if (!("Notification" in window)) return "unsupported";
    let permission = window.Notification.permission;
    if (permission === "default") permission = await window.Notification.requestPermission();
    if (permission !== "granted") {
      this.changed();
      return permission;
    }
    this.watched.add(id);
    this.save();
    this.listen();
    return "granted";
  }

  unwatch(id) {
    this.watched.delete(id);
    this.save();
    if (!this.watched.size && this.stopListening) {
      this.stopListening();
      this.stopListening = null;
    }
  }

  save() {
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify([...this.watched]));
    } catch {
      // kept for this page only
    }
    this.changed();
  }

  changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  listen() {
    if (!this.stopListening) {
      // The same subscription the list pages hold: every project's lifecycle events.
      this.stopListening = this.live.subscribe(
        "all",
        null,
        {
          onEvent: (event) => {
            if (event.type === "deployment_completed" && this.watched.has(event.deployment_id)) this.finished(event.deployment_id, event);
          },
          onReset: () => this.checkAll(),
        },
        { types: LIFECYCLE_TYPES, quiet: true },
      );
    }
    this.checkAll();
  }

  /** Announce the watched deployments that finished while nobody was listening. */
  async checkAll() {
    for (const id of [...this.watched]) {
      try {
        const view = await getJSON(deploymentPath(id));
        if (!isOpen(view.status) && this.watched.has(id)) this.announce(view);
      } catch {
        // not reported yet, or the hub is away: the next event or reconnect tells
      }
    }
  }

  async finished(id, event) {
    let view;
    try {
      view = await getJSON(deploymentPath(id));
    } catch {
      view = { deployment_id: id, project: event.project, status: event.payload?.status, error: event.payload?.error };
    }
    if (this.watched.has(id)) this.announce(view);
  }

  announce(view) {
    const id = view.deployment_id;
    this.unwatch(id);
    const what = plainText(view.workflow_name || view.project);
    const outcome = OUTCOMES[view.status] || `ended: ${view.status}`;
    const lines = [`${plainText(view.project)} ${plainText(id)}${view.branch ? ` on ${plainText(view.branch)}` : ""}`];
    if (typeof view.duration_ms === "number") lines.push(`took ${formatDuration(view.duration_ms)}`);
    if (view.error) lines.push(stripAnsi(String(view.error)).split("\n")[0].slice(0, 200));
    let notification;
    try {
      notification = new window.Notification(`${what} ${outcome}`, { body: lines.join(" · "), tag: `deployment-${id}` });
    } catch {
      return; // the browser refused to show it (permission withdrawn meanwhile)
    }
    notification.addEventListener?.("click", () => {
      window.focus();
      window.location.hash = `#/deployments/${encodeURIComponent(id)}`;
      notification.close?.();
    });
  }
}
