// Stale runs (EVENTS.md "Stale runs"): something still open (running, pending) that
// the hub has heard nothing of for HUB_STALE_AFTER seconds.  The hub says `stale`
// when it answers; the page tells as time passes, from each run's `last_news_at`
// and the `stale_after` of the WebSocket's welcome frame, so a page left open
// turns a run stale without a reload.  A stale run's timer stops at its last news;
// any new event brings fresh `last_news_at` and revives it.

import { parseTime } from "./time.js";

let staleAfterMs = null; // unknown until the hub's welcome frame

/** The hub's HUB_STALE_AFTER, in seconds (0: runs never go stale). */
export function setStaleAfter(seconds) {
  staleAfterMs = typeof seconds === "number" && seconds > 0 ? seconds * 1000 : 0;
}

export function isOpen(status) {
  return status === "running" || status === "pending";
}

/**
 * Whether something in `status`, last heard of at `lastNewsAt`, is stale at `now`.
 * `told` is what the hub said when it answered, used until its rule is known.
 */
export function isStale(status, lastNewsAt, now = Date.now(), told = false) {
  if (!isOpen(status)) return false;
  const news = parseTime(lastNewsAt);
  if (staleAfterMs === null || news === null) return Boolean(told);
  return staleAfterMs > 0 && now - news > staleAfterMs;
}

/** Where an open thing's timer reads up to: now, or its last news once it is stale. */
export function openUntil(status, lastNewsAt, now = Date.now(), told = false) {
  return isStale(status, lastNewsAt, now, told) ? parseTime(lastNewsAt) : now;
}

/**
 * Mark elements that stand for open runs (`data-stale-news` = their last news) with
 * `data-stale`, and show or hide those that are stale badges.
 */
export function markStale(root = document, now = Date.now()) {
  const els = root.matches?.("[data-stale-news]") ? [root] : [];
  els.push(...root.querySelectorAll("[data-stale-news]"));
  for (const el of els) {
    const stale = isStale("running", el.dataset.staleNews, now, el.dataset.staleTold === "true");
    el.dataset.stale = String(stale);
    if (el.classList.contains("badge-stale")) el.hidden = !stale;
  }
}
