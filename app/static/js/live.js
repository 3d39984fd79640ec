// One WebSocket to the hub (CONTRACT.md "WebSocket"), shared by every view.
//
// Views ask for a deployment's events, or every project's (`subscribe_all`);
// this keeps the subscriptions across reconnects.  Each subscription remembers the id of the
// last event it saw and resubscribes with `since`, so a dropped connection or a
// restarted hub loses nothing: the hub replays exactly what was missed, or says
// `recovered: false`, and then the view reloads its state from the read API.

import { webSocketUrl } from "./api.js";

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 5000;
const DEFAULT_HEARTBEAT_S = 25;
/** Types that change what lists show; logs and metrics are left out of list subscriptions. */
export const LIFECYCLE_TYPES = [
  "deployment_started",
  "deployment_completed",
  "deployment_rollback",
  "step_started",
  "step_completed",
];

const TARGET_FIELD = { project: "project", deployment: "deployment_id", all: null };

class Subscription {
  constructor(kind, target, { since = null, types = null, quiet = false } = {}) {
    this.kind = kind; // "project" | "deployment" | "all" (every project's events)
    this.target = kind === "all" ? null : target;
    this.since = since || null;
    this.types = types || null;
    this.handlers = new Set();
    // Without `since` the hub replays recent history first.  A quiet subscription
    // takes that only as its starting position; with `since`, what is replayed
    // is what we missed, and it is always delivered.
    this.quiet = quiet;
    this.quietUntilLive = quiet && !this.since;
  }

  get key() {
    return `${this.kind}\u0000${this.target}`;
  }

  frame(action = "subscribe") {
    const frame = { type: `${action}_${this.kind}` };
    const field = TARGET_FIELD[this.kind];
    if (field) frame[field] = this.target;
    if (action !== "subscribe") return frame;
    if (this.since) frame.since = this.since;
    else if (this.quiet) frame.limit = 1; // the latest event is enough to know where we are
    if (this.types) frame.types = this.types;
    return frame;
  }

  matches(event) {
    // The hub sends an event once per connection however many subscriptions it matches,
    // so each subscription picks out its own: by target and by the types it asked for.
    if (this.types && !this.types.includes(event.type)) return false;
    if (this.kind === "all") return true;
    return this.kind === "project" ? event.project === this.target : event.deployment_id === this.target;
  }
}

export class Live extends EventTarget {
  constructor() {
    super();
    this.subscriptions = new Map();
    this.socket = null;
    this.state = "connecting";
    this.attempt = 0;
    this.retryAt = null;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.heartbeatSeconds = DEFAULT_HEARTBEAT_S;
    /** The hub's HUB_STALE_AFTER in seconds, from its welcome frame (null until then). */
    this.staleAfter = null;
    this.lastHeard = 0;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  /**
   * Listen to a project's or deployment's events, or (kind "all", target null) to every
   * project's. handlers: {onEvent(event), onReset()}; options: {since, types, quiet}.
   * Returns a function that stops listening.
   */
  subscribe(kind, target, handlers, options = {}) {
    const probe = new Subscription(kind, target, options);
    let sub = this.subscriptions.get(probe.key);
    if (!sub) {
      sub = probe;
      this.subscriptions.set(sub.key, sub);
      this.send(sub.frame());
    }
    sub.handlers.add(handlers);
    return () => {
      sub.handlers.delete(handlers);
      if (sub.handlers.size === 0 && this.subscriptions.get(sub.key) === sub) {
        this.subscriptions.delete(sub.key);
        this.send(sub.frame("unsubscribe"));
      }
    };
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(webSocketUrl());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (message) => this.onMessage(message));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.heartbeatTimer);
      this.scheduleReconnect();
    });
    socket.addEventListener("open", () => {
      this.lastHeard = Date.now();
      for (const sub of this.subscriptions.values()) {
        sub.quietUntilLive = sub.quiet && !sub.since;
        this.send(sub.frame());
      }
    });
  }

  reconnectNow() {
    if (this.socket === null && this.retryTimer !== null) {
      this.attempt = Math.max(this.attempt, 1);
      this.connect();
    }
  }

  scheduleReconnect() {
    this.attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryAt = Date.now() + delay;
    this.setState("offline");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  onMessage(message) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        this.attempt = 0;
        if (frame.limits && frame.limits.heartbeat_interval > 0) {
          this.heartbeatSeconds = Math.min(frame.limits.heartbeat_interval, 60);
        }
        if (typeof frame.stale_after === "number" && frame.stale_after >= 0) {
          this.staleAfter = frame.stale_after;
          this.dispatchEvent(new CustomEvent("staleafter", { detail: { seconds: frame.stale_after } }));
        }
        this.startHeartbeat();
        this.setState("live");
        break;
      case "subscribed": {
        const sub = this.lookup(frame);
        if (sub && frame.recovered === false) {
          sub.since = null; // history no longer reaches back: take what it holds, then reload
          sub.quietUntilLive = true;
          for (const handler of sub.handlers) handler.onReset?.();
        }
        break;
      }
      case "replay_complete": {
        const sub = this.lookup(frame);
        if (sub) sub.quietUntilLive = false;
        break;
      }
      case "event":
        this.onEvent(frame.event);
        break;
      case "error":
        console.warn("hub refused a frame:", frame.code, frame.message);
        break;
      default:
        break; // pong and frames this page does not need
    }
  }

  onEvent(event) {
    if (!event || typeof event.id !== "string") return;
    for (const sub of this.subscriptions.values()) {
      if (!sub.matches(event)) continue;
      if (sub.since && event.id <= sub.since) continue; // ids increase; seen already
      sub.since = event.id;
      if (sub.quietUntilLive) continue;
      for (const handler of sub.handlers) handler.onEvent?.(event);
    }
  }

  lookup(frame) {
    if (frame.all === true) return this.subscriptions.get("all\u0000null");
    if ("project" in frame) return this.subscriptions.get(`project\u0000${frame.project}`);
    return this.subscriptions.get(`deployment\u0000${frame.deployment_id}`);
  }

  startHeartbeat() {
    clearInterval(this.heartbeatTimer);
    const every = this.heartbeatSeconds * 1000;
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 2 * every + 5000) {
        this.socket?.close(); // silent for too long: assume the line is dead
        return;
      }
      this.send({ type: "ping" });
    }, every);
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, retryAt: this.retryAt } }));
  }
}
