// How log panels show their lines, as the reader chose: with or without timestamps, and
// from which level up.  Kept in localStorage like the time-zone switch (time.js) and
// applied to every panel at once, through attributes on <html> that the style sheet reads:
// nothing is re-rendered, and lines that arrive later follow the choice too.

const TIMES_KEY = "deploy-dashboard-log-times";
const LEVEL_KEY = "deploy-dashboard-log-level";
/** The levels of the contract, least severe first (ledger/events.py LOG_LEVELS). */
export const LEVELS = ["debug", "info", "warning", "error"];

function stored(key, choices) {
  try {
    const value = localStorage.getItem(key);
    return choices.includes(value) ? value : choices[0];
  } catch {
    return choices[0]; // storage disabled: the default, for this page only
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // not remembered, still applied
  }
}

let times = stored(TIMES_KEY, ["shown", "hidden"]);
let level = stored(LEVEL_KEY, LEVELS);

function apply() {
  document.documentElement.dataset.logTimes = times;
  document.documentElement.dataset.logLevel = level;
  window.dispatchEvent(new CustomEvent("logprefschange"));
}
apply();

export function timesShown() {
  return times === "shown";
}

export function setTimesShown(on) {
  times = on ? "shown" : "hidden";
  store(TIMES_KEY, times);
  apply();
}

/** The least severe level shown ("debug": every line). */
export function leastLevel() {
  return level;
}

export function setLeastLevel(value) {
  level = LEVELS.includes(value) ? value : LEVELS[0];
  store(LEVEL_KEY, level);
  apply();
}

/** Whether a line of `lineLevel` is shown at the chosen level. */
export function levelShown(lineLevel) {
  return LEVELS.indexOf(lineLevel) >= LEVELS.indexOf(level);
}
