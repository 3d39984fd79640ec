#!/usr/bin/env bash
# Report a deployment, or one step of it, to the deployment dashboard hub.
#
# Drop-in replacement for the notify-dashboard.sh that deploy pipelines already
# call, with the same positional arguments and defaults:
#
#   notify-dashboard.sh [options] <project> <status> [duration] [sourceRepo] \
#       [runId] [deployType] [serverHost] [logs] [errorMessage]
#
#   status is running, success or failed, or any other word of the hub's
#   vocabulary, in any case: succeeded, completed, failure, error, cancelled,
#   canceled, skipped, started, in_progress, retrying, pending, queued.
#   duration is a number of seconds (42, 3.5), 0 when empty or left out;
#   deployType defaults to "static", serverHost to "redamancy.com.cn".
#   Another status word, or a duration that is not a number, is a usage
#   mistake (exit status 2).
#
# The JSON is built by python3 (present on every runner), never by pasting text
# into a template, so quotes, backslashes, newlines, control characters,
# Chinese text and ANSI colour codes in logs arrive byte for byte.
#
# Options:
#   --type TYPE          send a typed event instead of the legacy body:
#                        step_started, step_completed, step_manual, log_entry,
#                        deployment_started, deployment_completed,
#                        deployment_rollback, metrics_update, test
#   --step NAME          step name; "job / step" names the job as well
#   --job NAME           job name
#   --project NAME       (instead of the first positional argument)
#   --deployment-id ID   typed events: default runId, else $GITHUB_RUN_ID
#   --status WORD        (instead of the second positional argument)
#   --duration SECONDS   (instead of the third positional argument)
#   --logs TEXT          log text (instead of the eighth positional argument)
#   --logs-file FILE     log text from FILE, "-" for stdin; for logs over the
#                        ~128 KiB an argument may hold on Linux
#   --message TEXT       a message (typed events)
#   --error TEXT         error text (instead of the ninth positional argument)
#   --level LEVEL        log_entry level: debug, info, warning, error, or
#                        trace, notice, warn, err, critical, fatal (any case)
#   --event-id ID        the body's event_id (typed events and the legacy
#                        body): a repeat with the same id is stored once
#   --strict             exit 1 when the event was not delivered (the default
#                        is to report the failure and exit 0, so a dashboard
#                        outage never fails a deploy)
#   --dry-run            print the JSON body instead of sending it
#   -h, --help           this text
#   --NAME VALUE may also be written --NAME=VALUE, which is the way to give a
#   value that looks like an option itself (--message=--force).
#   An unknown option (any --NAME of letters, digits and dashes, such as --setp)
#   or an option without its value is a usage mistake (exit status 2). Anything
#   else, even when it starts with "-", is a positional argument, so log text
#   such as "--- build failed ---" or "-x" is passed on as it is; "--" ends the
#   options: every argument after it is positional.
#
# Environment:
#   DASHBOARD_URL        ingest URL (default: the hub's public ingest path on
#                        its default address,
#                        http://127.0.0.1:8000/project-dashboard/api/webhooks/deployment;
#                        the original script posted to
#                        https://redamancy.com.cn/project-dashboard/api/webhooks/deployment)
#   DASHBOARD_SECRET     sign the body: X-Hub-Signature-256 (one of the hub's
#                        HUB_WEBHOOK_SECRETS). The signature covers the body
#                        only, so without --event-id the body also carries the
#                        Idempotency-Key as its event_id
#   DASHBOARD_TOKEN      or send Authorization: Bearer (HUB_WEBHOOK_TOKENS)
#   DASHBOARD_RETRIES    retries after no answer, 429 or 5xx (default 3), all
#                        with the same body and Idempotency-Key: one event
#   DASHBOARD_RETRY_DELAY  first backoff in seconds, doubled each time (default 2)
#   DASHBOARD_TIMEOUT    seconds per attempt (default 10)
#
# Exit status:
#   0  sent; or not delivered (no answer, or an answer other than 200) and no
#      --strict: one line on stderr says why
#   1  not delivered, with --strict (also: no python3 on the runner)
#   2  a usage mistake, with or without --strict: nothing is sent, and stderr
#      has the usage line and one line saying what was wrong

set -u

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

strict=0
dry_run=0
fields=()
positional=()

synopsis="usage: ${0##*/} [options] <project> <status> [duration] [sourceRepo] [runId]\
 [deployType] [serverHost] [logs] [errorMessage] (see --help)"

# A mistake in how the script is called: exit 2 even without --strict, since
# no later run of the same line would ever send it.
fail_usage() {
    local annotation=""
    if [ "${GITHUB_ACTIONS:-}" = true ]; then
        annotation="::error title=dashboard notification::"
    fi
    printf '%s\n%snotify-dashboard: not sent: %s\n' "$synopsis" "$annotation" "$1" >&2
    exit 2
}

# --name or --name=value with a name of letters, digits and dashes: an option,
# known or not. Other words, even when they start with "-", are positional.
looks_like_option() {
    [[ ${1%%=*} =~ ^--[A-Za-z][A-Za-z0-9-]*$ ]]
}

while [ $# -gt 0 ]; do
    case $1 in
        --strict) strict=1 ;;
        --dry-run) dry_run=1 ;;
        -h | --help) usage; exit 0 ;;
        --strict=* | --dry-run=* | --help=*) fail_usage "${1%%=*} takes no value" ;;
        --type | --step | --job | --project | --deployment-id | --status | --duration | \
            --logs | --logs-file | --message | --error | --level | --event-id)
            if [ $# -lt 2 ]; then fail_usage "$1 needs a value"; fi
            # "--step $STEP --strict" with STEP empty: the value went missing.
            if [ "$2" = -- ] || looks_like_option "$2"; then
                fail_usage "$1 needs a value, not the option ${2%%=*} (for such a value: $1=VALUE)"
            fi
            name=${1#--}
            fields+=("${name//-/_}=$2")
            shift
            ;;
        --type=* | --step=* | --job=* | --project=* | --deployment-id=* | --status=* | \
            --duration=* | --logs=* | --logs-file=* | --message=* | --error=* | --level=* | \
            --event-id=*)
            name=${1%%=*}
            name=${name#--}
            fields+=("${name//-/_}=${1#*=}")
            ;;
        --) shift; positional+=("$@"); break ;;
        *)
            if looks_like_option "$1"; then fail_usage "unknown option ${1%%=*}"; fi
            positional+=("$1")
            ;;
    esac
    shift
done

if [ ${#positional[@]} -gt 9 ]; then
    fail_usage "at most 9 positional arguments, got ${#positional[@]}"
fi

names=(project status duration sourceRepo runId deployType serverHost logs errorMessage)
args=()
for index in "${!positional[@]}"; do
    args+=("arg_${names[$index]}=${positional[$index]}")
done

# python3 on Linux and macOS runners; Windows runners' Git Bash calls it python.
python=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 6))' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "notify-dashboard: not sent: python3 is not installed" >&2
    if [ "$strict" = 1 ]; then exit 1; fi
    exit 0
fi

IFS= read -r -d '' PROGRAM <<'PY' || true
import datetime, hashlib, hmac, json, math, os, sys, time, urllib.error, urllib.request, uuid

strict, dry_run, synopsis = sys.argv[1] == "1", sys.argv[2] == "1", sys.argv[3]
given = {}
for item in sys.argv[4:]:
    key, _, value = item.partition("=")
    given[key] = value
in_actions = os.environ.get("GITHUB_ACTIONS") == "true"

# The hub's status vocabulary (ledger/events.py STATUS_WORDS; a unit test keeps
# the two equal), any case: a word outside it is refused before anything is sent.
STATUS_WORDS = (
    "success", "succeeded", "completed", "failed", "failure", "error", "cancelled",
    "canceled", "skipped", "running", "started", "in_progress", "retrying", "pending",
    "queued",
)
# --level words (app/schemas.py LEVEL_WORDS), any case, and --type names
# (app/schemas.py SCHEMAS), as given: the same unit test compares them.
LEVEL_WORDS = (
    "debug", "info", "warning", "error", "trace", "notice", "warn", "err", "critical",
    "fatal",
)
EVENT_TYPES = (
    "deployment_started", "deployment_completed", "step_started", "step_completed",
    "step_manual", "log_entry", "metrics_update", "deployment_rollback", "test",
)


def finish(ok, line, usage=False):
    """Exit: 0 sent; a usage mistake 2; a delivery that failed 1, or 0 unless --strict."""
    if ok:
        print("notify-dashboard: " + line, flush=True)
        sys.exit(0)
    if usage:
        prefix = "::error title=dashboard notification::" if in_actions else ""
        print(synopsis, file=sys.stderr)
    else:
        prefix = "::warning title=dashboard notification::" if in_actions else ""
    print(prefix + "notify-dashboard: not sent: " + line, file=sys.stderr, flush=True)
    sys.exit(2 if usage else 1 if strict else 0)


def value(option, positional=None, default=""):
    if option in given:
        return given[option]
    if positional and given.get("arg_" + positional, "") != "":
        return given["arg_" + positional]
    return default


logs = value("logs", "logs")
if "logs_file" in given:
    source = given["logs_file"]
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        finish(False, "cannot read --logs-file %s: %s" % (source, exc.strerror or exc), True)
    logs = raw.decode("utf-8", errors="replace")

now = datetime.datetime.now(datetime.timezone.utc)
timestamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)
project = value("project", "project")
status = value("status", "status")
if status and status.strip().lower() not in STATUS_WORDS:
    finish(False, "unknown status %r; one of (in any case): %s"
           % (status[:40], ", ".join(STATUS_WORDS)), True)
duration = value("duration", "duration")
if duration.strip() == "":
    duration = None  # the legacy body's 0; a typed event leaves it out
else:
    try:
        number = float(duration)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        finish(False, "%s must be a number of seconds, not %r"
               % ("--duration" if "duration" in given else "duration", duration[:40]), True)
    duration = int(number) if number.is_integer() else number
level = given.get("level", "")
if level and level.lower() not in LEVEL_WORDS:
    finish(False, "unknown --level %r; one of (in any case): %s"
           % (level[:40], ", ".join(LEVEL_WORDS)), True)
kind = given.get("type", "")
if kind and kind not in EVENT_TYPES:
    finish(False, "unknown --type %r; one of: %s" % (kind[:40], ", ".join(EVENT_TYPES)), True)

if not kind:
    if not project or not status:
        finish(False, "a project and a status are required", True)
    body = {
        "project": project,
        "status": status,
        "duration": 0 if duration is None else duration,
        "timestamp": timestamp,
        "sourceRepo": value("", "sourceRepo"),
        "runId": value("deployment_id", "runId"),
        "deployType": value("", "deployType", "static"),
        "serverHost": value("", "serverHost", "redamancy.com.cn"),
        "logs": logs,
        "errorMessage": value("error", "errorMessage"),
    }
    what = "%s %s of %s" % ("deployment", status, project)
else:
    deployment_id = value("deployment_id", "runId") or os.environ.get("GITHUB_RUN_ID", "")
    if not project and not deployment_id:
        finish(False, "a typed event needs a project or a deployment id", True)
    body = {"type": kind, "project": project, "timestamp": timestamp}
    if deployment_id:
        body["deployment_id"] = deployment_id
    step, job = given.get("step", ""), given.get("job", "")
    if step and job:
        body["job"], body["step"] = job, step
    elif step:
        body["step_name"] = step
    elif job:
        body["job"] = job
    optional = {
        "status": status,
        "logs": logs,
        "message": given.get("message", ""),
        "error": value("error", "errorMessage"),
        "level": level,
        "repository": value("", "sourceRepo"),
        "deployType": value("", "deployType"),
        "serverHost": value("", "serverHost"),
    }
    body.update({key: text for key, text in optional.items() if text != ""})
    if duration is not None:
        body["duration"] = duration
    label = " / ".join(part for part in (job, step) if part)
    what = " ".join(part for part in (kind, label, status) if part)
    what += " of %s" % (project or "deployment " + deployment_id)

# One key for every attempt of this call, so a retry after a lost answer is a
# duplicate, not a second event. It goes in the Idempotency-Key header, and,
# in a signed body without --event-id, in event_id: the signature covers the
# body only, so a hub ignores unsigned delivery headers on a signed post.
delivery_key = str(uuid.uuid4())
secret, token = os.environ.get("DASHBOARD_SECRET", ""), os.environ.get("DASHBOARD_TOKEN", "")
if given.get("event_id", "") != "":
    body["event_id"] = given["event_id"]
elif secret:
    body["event_id"] = delivery_key

data = json.dumps(body, ensure_ascii=False).encode("utf-8")
if dry_run:
    sys.stdout.buffer.write(data + b"\n")
    sys.exit(0)

url = os.environ.get("DASHBOARD_URL") or (
    "http://127.0.0.1:8000/project-dashboard/api/webhooks/deployment")
headers = {
    "Content-Type": "application/json",
    "User-Agent": "notify-dashboard/2",
    "Idempotency-Key": delivery_key,
}
if secret:
    digest = hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = "sha256=" + digest
if token:
    headers["Authorization"] = "Bearer " + token


def number_env(name, default):
    try:
        return max(float(os.environ.get(name) or default), 0)
    except ValueError:
        return default


retries = int(number_env("DASHBOARD_RETRIES", 3))
delay = number_env("DASHBOARD_RETRY_DELAY", 2)
timeout = number_env("DASHBOARD_TIMEOUT", 10) or 10


def hub_error(raw):
    try:
        error = json.loads(raw)["error"]
        parts = [str(error["code"]) + ": " + str(error["message"])]
        details = error.get("details") or {}
        def walk(node, path):
            if isinstance(node, dict):
                for key, item in node.items():
                    walk(item, path + [str(key)])
            elif isinstance(node, list) and all(isinstance(x, str) for x in node):
                parts.append(".".join(path) + ": " + " ".join(node))
            else:
                parts.append(".".join(path) + ": " + str(node))
        walk(details, [])
        return "; ".join(parts)
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", errors="replace").strip() or "(empty answer)"


if not url.startswith(("http://", "https://")):
    finish(False, "DASHBOARD_URL must be an http(s) URL, not %r" % url[:200], True)
reason = ""
for attempt in range(retries + 1):
    pause = delay * 2 ** (attempt - 1)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status_code, raw = answer.status, answer.read(1 << 20)
    except urllib.error.HTTPError as error:
        status_code, raw = error.code, error.read(1 << 20)
        retry_after = error.headers.get("Retry-After", "")
        if retry_after.isdigit():
            pause = min(int(retry_after), 30)
    except (urllib.error.URLError, OSError) as error:
        status_code, raw = None, b""
        reason = "no answer from %s (%s)" % (url, getattr(error, "reason", error))
    if status_code == 200:
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = {}
        ids = ", ".join(reply.get("ids") or []) or "no ids"
        again = "; already accepted earlier" if reply.get("duplicate") else ""
        finish(True, "sent %s to %s (HTTP 200, ids: %s%s)" % (what, url, ids, again))
    if status_code is not None:
        reason = "HTTP %d from %s: %s" % (status_code, url, hub_error(raw))
        if status_code != 429 and status_code < 500:
            finish(False, "%s (%s)" % (what, reason))
    if attempt < retries:
        time.sleep(pause)
finish(False, "%s after %d attempts; last: %s" % (what, retries + 1, reason))
PY

# ${a[@]+"${a[@]}"}: an empty array under set -u, also on macOS's bash 3.2
exec "$python" -I -c "$PROGRAM" "$strict" "$dry_run" "$synopsis" ${fields[@]+"${fields[@]}"} ${args[@]+"${args[@]}"}
