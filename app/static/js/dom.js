// Building DOM from data without ever parsing data as HTML, and formatting values.
//
// Every value shown on the page comes from senders we do not control (a log line
// may hold `<script>`), so elements are made with createElement and filled with
// textContent; no code here or elsewhere hands an HTML string to the browser.

import { isOpen, markStale, openUntil } from "./stale.js";
import { formatClock, formatDateTime, formatRelative, parseTime, timeAgo } from "./time.js";

export { formatClock, parseTime, timeAgo };

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element; attributes are set as attributes, children as nodes or text. */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element (sparklines). */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Only http(s) links from data become hrefs; anything else (javascript:, data:) is dropped. */
export function safeUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

export const STATUS_ICONS = {
  success: "✓",
  failure: "✕",
  running: "●",
  pending: "○",
  cancelled: "⊘",
  skipped: "↷",
};

export function statusBadge(status, extraClass = "") {
  const known = status in STATUS_ICONS ? status : "pending";
  return h(
    "span",
    { class: `badge badge-${known} ${extraClass}`.trim(), dataset: { status: known } },
    h("span", { class: "badge-icon", "aria-hidden": "true" }, STATUS_ICONS[known]),
    h("span", { class: "badge-text" }, String(status || "unknown")),
  );
}

/** 850 ms, 12.3 s, 4m 05s, 1h 02m. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return MISSING;
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const whole = Math.floor(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  if (hours > 0) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
  return `${minutes}m ${String(rest).padStart(2, "0")}s`;
}

/**
 * Elapsed time of something still open; the page ticker keeps it current, and stops it at
 * `lastNewsAt` once the run is stale.
 */
export function elapsed(startedAt, lastNewsAt = null, told = false, extraClass = "") {
  const now = Date.now();
  const until = openUntil("running", lastNewsAt, now, told);
  return h(
    "span",
    {
      class: `elapsed ${extraClass}`.trim(),
      dataset: { since: startedAt || "", ...(lastNewsAt ? { news: lastNewsAt } : {}), ...(told ? { told: "true" } : {}) },
    },
    formatDuration(until - (parseTime(startedAt) ?? now)),
  );
}

/**
 * A run's duration: the hub's `duration_ms` once it ended; while it is open, the time
 * since it started (to its last news once stale), ticking.  `lastNewsAt` defaults to the
 * item's own (deployments and list rows carry it; jobs and steps take their deployment's).
 */
export function durationOf(item, extraClass = "", lastNewsAt = item.last_news_at) {
  if (isOpen(item.status) && item.started_at) {
    return elapsed(item.started_at, lastNewsAt, Boolean(item.stale), extraClass);
  }
  return h("span", { class: extraClass || null }, formatDuration(item.duration_ms));
}

/** The "stale" badge of an open run, shown while it is stale (the ticker keeps it true). */
export function staleBadge(lastNewsAt, told = false, extraClass = "") {
  const badge = h(
    "span",
    {
      class: `badge badge-stale ${extraClass}`.trim(),
      dataset: { staleNews: lastNewsAt || "", staleTold: String(Boolean(told)), ...(lastNewsAt ? { titleAt: lastNewsAt, titlePrefix: "No news since " } : {}) },
      title: lastNewsAt ? `No news since ${formatDateTime(lastNewsAt)}` : "No news for a long time",
    },
    h("span", { class: "badge-icon", "aria-hidden": "true" }, "◷"),
    h("span", { class: "badge-text" }, "stale"),
  );
  markStale(badge);
  return badge;
}

/** Refresh every ticking duration, relative time and stale mark on the page. */
export function tick(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("[data-since]")) {
    const since = parseTime(el.dataset.since);
    const until = openUntil("running", el.dataset.news, now, el.dataset.told === "true");
    if (since !== null) el.textContent = formatDuration(until - since);
  }
  for (const el of root.querySelectorAll("[data-ago]")) {
    if (el.dataset.ago) el.textContent = formatRelative(el.dataset.ago, now);
  }
  markStale(root, now);
}

export function shortCommit(commit) {
  return typeof commit === "string" && /^[0-9a-f]{12,}$/i.test(commit) ? commit.slice(0, 7) : commit;
}

/** What the page shows for a value it does not have: one dash, everywhere. */
export const MISSING = "—";

/** A share as a percentage, one way everywhere: at most one decimal ("16.7%", "5%", "100%"). */
export function percent(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return MISSING;
  return `${percentNumber(value)}%`;
}

/** The number a percentage shows, rounded as `percent` rounds it (chart values). */
export function percentNumber(value) {
  return Math.round(value * 1000) / 10;
}

/** A number as the page writes numbers: grouped, at most two decimals. */
export function number(value) {
  return typeof value === "number" ? value.toLocaleString("en", { maximumFractionDigits: 2 }) : MISSING;
}

/** "1 recovery", "2 recoveries": a count with its noun in the right number. */
export function count(n, one, many = `${one}s`) {
  return `${number(n)} ${n === 1 ? one : many}`;
}

export function median(values) {
  const known = values.filter((v) => typeof v === "number").sort((a, b) => a - b);
  if (!known.length) return null;
  const mid = Math.floor(known.length / 2);
  return known.length % 2 ? known[mid] : (known[mid - 1] + known[mid]) / 2;
}

/** Run `fn` once, `wait` ms after the last call (re-fetches after a burst of events). */
export function debounce(fn, wait) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, wait);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** Run `fn` at once, then at most once every `wait` ms while calls keep coming (the last one too). */
export function throttle(fn, wait) {
  let timer = null;
  let pending = false;
  const run = () => {
    timer = setTimeout(() => {
      timer = null;
      if (pending) {
        pending = false;
        fn();
        run();
      }
    }, wait);
  };
  return () => {
    if (timer) {
      pending = true;
      return;
    }
    fn();
    run();
  };
}

/** A serial runner: at most one call in flight, and one more queued behind it. */
export function serial(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}
