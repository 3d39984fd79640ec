// Times on the page: one format everywhere ("2026-08-12 14:03:07 UTC+02:00"),
// always with its zone, in the reader's local time or in UTC as they chose (the
// choice is kept in localStorage).  Relative times ("3 minutes ago") carry the
// exact moment in their title.  Elements made here remember their moment, so a
// switch of zone rewrites them in place.

const STORAGE_KEY = "deploy-dashboard-time-zone";
/** What the page shows for a time it does not have (the same dash as dom.js's MISSING). */
const MISSING = "—";
const MODES = ["local", "utc"];

function stored() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return MODES.includes(value) ? value : "local";
  } catch {
    return "local"; // storage disabled: local time, for this page only
  }
}

let mode = stored();

/** "local" or "utc". */
export function zoneMode() {
  return mode;
}

/** Switch every time on the page to local time or UTC, and remember the choice. */
export function setZoneMode(next) {
  mode = next === "utc" ? "utc" : "local";
  try {
    localStorage.setItem(STORAGE_KEY, mode);
  } catch {
    // not remembered, still applied
  }
  retime(document);
  window.dispatchEvent(new CustomEvent("timezonechange", { detail: { mode } }));
}

/** The IANA name of the browser's zone ("Europe/Berlin"), when it says. */
export function localZoneName() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || null;
  } catch {
    return null;
  }
}

/** "UTC+02:00": the local offset at `at` (ms since the epoch). */
function offsetLabel(at) {
  const minutes = -new Date(at).getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** The zone times are shown in, as shown beside them: "UTC" or the local offset now. */
export function zoneLabel(at = Date.now()) {
  return mode === "utc" ? "UTC" : offsetLabel(at);
}

/** Minutes east of UTC of the zone shown, now (for APIs that take an offset). */
export function zoneOffsetMinutes() {
  return mode === "utc" ? 0 : -new Date().getTimezoneOffset();
}

/** The zone shown, as an IANA name for APIs that take one. */
export function zoneName() {
  return mode === "utc" ? "UTC" : localZoneName();
}

export function parseTime(value) {
  if (!value) return null;
  const ms = typeof value === "number" ? value : Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function parts(at) {
  const date = new Date(at);
  if (mode === "utc") {
    return [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()];
  }
  return [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
}

const two = (n) => String(n).padStart(2, "0");

/** "2026-08-12 14:03:07 UTC+02:00"; "" for no time. */
export function formatDateTime(value) {
  const at = parseTime(value);
  if (at === null) return "";
  const [year, month, day, hours, minutes, seconds] = parts(at);
  return `${year}-${two(month)}-${two(day)} ${two(hours)}:${two(minutes)}:${two(seconds)} ${zoneLabel(at)}`;
}

/** "14:03:07" in the zone shown (log lines, whose date is the deployment's). */
export function formatClock(value) {
  const at = parseTime(value);
  if (at === null) return "";
  const [, , , hours, minutes, seconds] = parts(at);
  return `${two(hours)}:${two(minutes)}:${two(seconds)}`;
}

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

export function formatRelative(value, now = Date.now()) {
  const at = parseTime(value);
  if (at === null) return MISSING;
  const seconds = Math.round((at - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return relative.format(Math.round(seconds), "second");
  if (abs < 2700) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 64800) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

function timeElement(value, attrs, text) {
  const el = document.createElement("time");
  if (value) el.setAttribute("datetime", value);
  for (const [key, val] of Object.entries(attrs)) el.dataset[key] = val;
  el.textContent = text;
  return el;
}

/** A <time> showing the exact moment with its zone; a dash when there is none. */
export function absoluteTime(value) {
  if (parseTime(value) === null) return document.createTextNode(MISSING);
  return timeElement(value, { at: value }, formatDateTime(value));
}

/** A <time> that says "3 minutes ago" and shows the exact moment, with its zone, on hover. */
export function timeAgo(value) {
  if (parseTime(value) === null) return document.createTextNode(MISSING);
  const el = timeElement(value, { ago: value }, formatRelative(value));
  el.title = formatDateTime(value);
  return el;
}

/** Rewrite every time under `root` for the zone now chosen. */
export function retime(root = document) {
  for (const el of root.querySelectorAll("[data-at]")) el.textContent = formatDateTime(el.dataset.at);
  for (const el of root.querySelectorAll("[data-clock-at]")) el.textContent = formatClock(el.dataset.clockAt);
  for (const el of root.querySelectorAll("[data-ago]")) el.title = formatDateTime(el.dataset.ago);
  for (const el of root.querySelectorAll("[data-title-at]")) {
    el.title = `${el.dataset.titlePrefix || ""}${formatDateTime(el.dataset.titleAt)}`;
  }
}

/** The switch in the top bar: shows the zone in use; a click changes to the other. */
export function zoneSwitch(button) {
  const show = () => {
    const utc = mode === "utc";
    const name = localZoneName();
    const local = `local time${name ? `, ${name}` : ""}`;
    button.textContent = utc ? "UTC" : `Local · ${zoneLabel()}`;
    button.title = utc ? `Times are in UTC. Show them in ${local}.` : `Times are in ${local} (${zoneLabel()}). Show them in UTC.`;
    button.setAttribute("aria-label", button.title);
    button.dataset.mode = mode;
  };
  button.addEventListener("click", () => setZoneMode(mode === "utc" ? "local" : "utc"));
  window.addEventListener("timezonechange", show);
  show();
}
