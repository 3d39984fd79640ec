// The read API and the WebSocket address, relative to wherever the page is served
// (`/` directly, `/project-dashboard/` behind nginx): every URL is resolved
// against the page's own directory, so neither prefix is written down here.

const TOKEN_KEY = "deploy-dashboard-read-token";
const base = new URL(".", window.location.href);

/** A read token given as `?token=` is kept for this tab and taken out of the address bar. */
export function adoptTokenFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (token === null) return;
  setToken(token);
  params.delete("token");
  const query = params.toString();
  history.replaceState(null, "", `${window.location.pathname}${query ? `?${query}` : ""}${window.location.hash}`);
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives only as long as this page
  }
}

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {}; // field -> messages, for a 400 that names its parameter
  }
}

function apiUrl(path, params = {}) {
  const url = new URL(`api/${path}`, base);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

/** GET a JSON document; a non-2xx answer throws ApiError with the hub's error code. */
export async function getJSON(path, params = {}, { signal } = {}) {
  const headers = { Accept: "application/json" };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let response;
  try {
    response = await fetch(apiUrl(path, params), { headers, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "The hub cannot be reached.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.error ? body.error : {};
    throw new ApiError(response.status, detail.code || `http_${response.status}`, detail.message || response.statusText, detail.details);
  }
  return body;
}

/**
 * A URL the browser itself opens (a file to save): the read token, when there is one, goes
 * in the query, since a link cannot send a header.
 */
export function fileUrl(path, params = {}) {
  return apiUrl(path, { ...params, token: token() }).href;
}

export function deploymentPath(id) {
  return `deployments/${encodeURIComponent(id)}`;
}

/** The dashboard's page of a deployment. */
export function deploymentLink(id) {
  return `#/deployments/${encodeURIComponent(id)}`;
}

/**
 * A log line's stable link: its deployment opened at the line, its step expanded
 * (the API hands out the same links; ledger/links.py spells them).
 */
export function lineLink(deploymentId, job, step, lineId) {
  const params = new URLSearchParams();
  if (job !== null && job !== undefined) params.set("job", job);
  if (step !== null && step !== undefined) params.set("step", step);
  params.set("line", lineId);
  return `${deploymentLink(deploymentId)}?${params}`;
}

/** Badge image URL for a README: absolute, without the token. */
export function badgeUrl(project) {
  return new URL(`api/projects/${encodeURIComponent(project)}/badge.svg`, base).href;
}

export function webSocketUrl() {
  const url = new URL("ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const secret = token();
  if (secret) url.searchParams.set("token", secret);
  return url.href;
}
