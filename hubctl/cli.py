"""The ``hubctl`` command line: argument parsing, environment, output and exit codes.

Exit codes: 0 done; 1 the hub (or the input) refused; 2 bad usage; 3 the hub
could not be reached; 4 GitHub refused or failed; 130 interrupted.  Every
failure is one line on stderr starting with ``hubctl:``, with the hub's field
errors indented below it.

Settings come from flags or the environment a pipeline already has:
``DASHBOARD_HUB`` (or the shell script's ``DASHBOARD_URL``),
``DASHBOARD_SECRET`` / ``DASHBOARD_TOKEN`` to sign or authorise posts,
``DASHBOARD_READ_TOKEN`` for reads, and for ``github watch``
``GITHUB_TOKEN``, ``GITHUB_API_URL``, ``GITHUB_REPOSITORY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from hubctl.hub import ROUTES, CommandError, HubClient, hub_from_env
from hubctl.render import Painter, deployment_tree, event_lines, search_hit_lines, use_colour
from hubctl.terminal import clean, escape_json_controls

Say = Callable[[str], None]

#: Largest JSON read from stdin by ``send`` (the hub's own default cap is 1 MiB).
MAX_STDIN_BYTES = 64 * 1024 * 1024


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubctl",
        description="Send, follow and inspect deployment events on a dashboard hub.",
        epilog="Environment: DASHBOARD_HUB, DASHBOARD_SECRET, DASHBOARD_TOKEN, "
        "DASHBOARD_READ_TOKEN; for github watch: GITHUB_TOKEN, GITHUB_API_URL.",
    )
    defaults = {
        "hub": hub_from_env(environ),
        "timeout": 30.0,
        "retries": 3,
        "color": "auto",
    }
    # The common options work before the command and after it; given after, they win.
    common = argparse.ArgumentParser(add_help=False)
    hub_help = f"the hub's base URL, under which /api and /ws live (default: {defaults['hub']})"
    for owner, default in ((parser, None), (common, argparse.SUPPRESS)):
        owner.add_argument(
            "--hub",
            default=default or defaults["hub"],
            help=hub_help,
        )
        owner.add_argument(
            "--timeout",
            type=_positive(float),
            default=default or defaults["timeout"],
            help="seconds per request (default: 30)",
        )
        owner.add_argument(
            "--retries",
            type=int,
            default=default or defaults["retries"],
            help="retries of unanswered, 429 and 5xx requests (default: 3)",
        )
        owner.add_argument(
            "--color", choices=("auto", "always", "never"), default=default or defaults["color"]
        )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[common])
        return sub

    send = command(commands, "send", "send one event (from flags) or JSON from stdin")
    send.add_argument(
        "--json",
        action="store_true",
        help="read the body from stdin: an event, {'events': [...]}, a list or JSON lines",
    )
    send.add_argument("--route", choices=sorted(ROUTES), default="deployment")
    send.add_argument("--type", dest="event_type", help="event type, e.g. step_started")
    for flag, help_text in (
        ("--project", "project name"),
        ("--deployment-id", "deployment (GitHub run) id"),
        ("--status", "status word, e.g. running, success, failed"),
        ("--step", 'step name; "job / step" names the job too'),
        ("--job", "job name"),
        ("--duration", "duration in seconds"),
        ("--message", "message text"),
        ("--logs", "log text (any Unicode, ANSI codes kept)"),
        ("--error", "error text"),
        ("--level", "log level of a log_entry"),
        ("--timestamp", "ISO-8601 time (default: when the hub receives it)"),
        ("--event-id", "idempotency key: a repeat with the same id is stored once"),
    ):
        send.add_argument(flag, help=help_text)
    send.add_argument(
        "--field", action="append", default=[], metavar="KEY=VALUE", help="any other key (text)"
    )
    send.add_argument(
        "--json-field",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other key with a JSON value, e.g. cpu_percent=12.5",
    )

    status = command(commands, "status", "a deployment's job/step tree")
    status.add_argument("deployment_id")
    status.add_argument("--json", action="store_true", help="print the hub's JSON as is")

    tail = command(commands, "tail", "follow events live over the WebSocket")
    target = tail.add_mutually_exclusive_group(required=True)
    target.add_argument("--project")
    target.add_argument("--deployment", dest="deployment_id")
    tail.add_argument("--since", help="start after this event id")
    tail.add_argument("--types", help="comma-separated event types to show")
    tail.add_argument("--json", action="store_true", help="one normalised event per line")
    tail.add_argument("--count", type=_positive(int), help="stop after this many events")
    tail.add_argument(
        "--until-complete", action="store_true", help="stop after a deployment_completed event"
    )

    replay = command(commands, "replay", "re-post events from a file or another hub")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON lines (e.g. from tail --json), - for stdin")
    source.add_argument("--from-hub", metavar="URL", help="another hub's base URL")
    replay.add_argument("--project", help="with --from-hub: only this project")
    replay.add_argument("--deployment-id", help="with --from-hub: only this deployment")
    replay.add_argument("--since", help="with --from-hub: only events after this id")
    replay.add_argument(
        "--dry-run", action="store_true", help="print the bodies that would be posted"
    )

    logs = commands.add_parser("logs", help="log lines across deployments")
    logs_commands = logs.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    search = command(
        logs_commands,
        "search",
        'search every stored log line: words (all must match), "quoted phrases", prefix*',
    )
    search.add_argument("query", help="e.g. 'econnrefused \"exit code\" migr*'")
    search.add_argument("--project")
    search.add_argument("--deployment", dest="deployment_id")
    search.add_argument("--job")
    search.add_argument("--step")
    search.add_argument("--level", choices=("debug", "info", "warning", "error"))
    search.add_argument("--since", help="only lines stamped at or after this ISO-8601 time")
    search.add_argument("--until", help="only lines stamped at or before this ISO-8601 time")
    search.add_argument(
        "--limit", type=_positive(int), default=50, help="most lines to print (default: 50)"
    )
    search.add_argument("--json", action="store_true", help="one result per line, as JSON")

    github = commands.add_parser("github", help="GitHub Actions runs as step events")
    github_commands = github.add_subparsers(dest="github_command", required=True, metavar="ACTION")
    watch = command(github_commands, "watch", "follow a run until it ends")
    watch.add_argument(
        "--repo",
        default=environ.get("GITHUB_REPOSITORY"),
        required=not environ.get("GITHUB_REPOSITORY"),
        help="OWNER/REPO (default: $GITHUB_REPOSITORY)",
    )
    watch.add_argument("--run-id", required=True, help="the workflow run's id")
    watch.add_argument(
        "--api-url",
        default=environ.get("GITHUB_API_URL") or "https://api.github.com",
        help="GitHub's REST API (default: %(default)s)",
    )
    watch.add_argument("--project", help="project name on the hub (default: the repo's name)")
    watch.add_argument(
        "--interval", type=_positive(float), default=10.0, help="seconds between polls"
    )
    watch.add_argument("--once", action="store_true", help="poll once, send, and exit")
    watch.add_argument(
        "--max-wait",
        type=_positive(float),
        default=900.0,
        help="longest total wait for GitHub rate limits, in seconds (default: %(default)s)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser(env).parse_args(argv)
    paint = Painter(use_colour(args.color, out, env))
    client = HubClient(
        args.hub,
        secret=env.get("DASHBOARD_SECRET"),
        token=env.get("DASHBOARD_TOKEN"),
        read_token=env.get("DASHBOARD_READ_TOKEN"),
        timeout=args.timeout,
        attempts=args.retries + 1,
    )

    # Every line goes through the terminal sanitiser on its way out, whatever put sender
    # text in it (render.py cleans each field already; this is the last word).
    def say(line: str) -> None:
        print(clean(line, colour=paint.enabled), file=out, flush=True)

    def notice(line: str) -> None:
        print(f"hubctl: {clean(line, colour=False)}", file=err, flush=True)

    try:
        if args.command == "send":
            return _send(args, client, stdin or sys.stdin, say)
        if args.command == "status":
            view = client.get(f"/deployments/{_path_part(args.deployment_id)}")
            for line in [_json_text(view, indent=2)] if args.json else deployment_tree(view, paint):
                say(line)
            return 0
        if args.command == "tail":
            return _tail(args, client, paint, say, notice)
        if args.command == "replay":
            return _replay(args, client, env, say)
        if args.command == "logs":
            return _search_logs(args, client, paint, say, notice)
        return _watch(args, client, env, say, notice)
    except CommandError as exc:
        notice(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _json_text(value: Any, indent: int | None = None) -> str:
    """JSON as text, non-ASCII kept, and the controls JSON leaves raw (C1, DEL) escaped."""
    return escape_json_controls(json.dumps(value, ensure_ascii=False, indent=indent))


def _path_part(value: str) -> str:
    return quote(value, safe="")


def _send(args: argparse.Namespace, client: HubClient, stdin: TextIO, say: Say) -> int:
    if args.json:
        text = stdin.read(MAX_STDIN_BYTES + 1)
        if len(text) > MAX_STDIN_BYTES:
            raise CommandError(f"stdin holds more than {MAX_STDIN_BYTES} bytes")
        posted = client.post_events(_stdin_events(text), args.route)
    else:
        if not args.event_type and args.route == "deployment":
            raise CommandError("give --type (e.g. step_started) or pipe JSON in with --json")
        body: dict[str, Any] = {"type": args.event_type} if args.event_type else {}
        for name in (
            "project",
            "deployment_id",
            "status",
            "job",
            "duration",
            "message",
            "logs",
            "error",
            "level",
            "timestamp",
            "event_id",
        ):
            value = getattr(args, name)
            if value is not None:
                body[name] = value
        if args.step is not None:
            body["step_name" if " / " in args.step and not args.job else "step"] = args.step
        for item in args.field:
            key, value = _pair(item, "--field wants KEY=VALUE")
            body[key] = value
        for item in args.json_field:
            key, value = _pair(item, "--json-field wants KEY=JSON")
            try:
                body[key] = json.loads(value)
            except ValueError:
                raise CommandError(f"--json-field {key}: not JSON: {value[:100]!r}") from None
        posted = client.post_events([body], args.route)
    count = len(posted.ids)
    noun = "event" if count == 1 else "events"
    if posted.duplicate:
        say(f"already accepted earlier ({count} {noun}): {' '.join(posted.ids)}")
    else:
        say(f"accepted {count} {noun}: {' '.join(posted.ids)}")
    return 0


def _pair(item: str, usage: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CommandError(f"{usage}, not {item[:100]!r}")
    return key, value


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type for numbers above zero, so no wait or count can be negative."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def _stdin_events(text: str) -> list[dict[str, Any]]:
    """An event, ``{"events": [...]}``, a JSON list, or JSON lines, as a list of bodies."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except ValueError as exc:
            raise CommandError(f"stdin is not JSON or JSON lines: {exc}") from None
    else:
        if isinstance(value, dict) and isinstance(value.get("events"), list):
            items = value["events"]
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
    if not items or not all(isinstance(item, dict) for item in items):
        raise CommandError("stdin must hold one or more JSON objects (events)")
    return items


def _tail(
    args: argparse.Namespace, client: HubClient, paint: Painter, say: Say, notice: Say
) -> int:
    from hubctl.tail import Tail

    seen = 0

    def show(event: dict[str, Any]) -> bool:
        nonlocal seen
        seen += 1
        if args.json:
            say(_json_text(event))
        else:
            for line in event_lines(event, paint):
                say(line)
        if args.count is not None and seen >= args.count:
            return True
        return bool(args.until_complete and event.get("type") == "deployment_completed")

    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    Tail(
        client,
        project=args.project,
        deployment_id=args.deployment_id,
        since=args.since,
        types=types,
        on_event=show,
        notice=notice,
        connect_timeout=min(args.timeout, 10.0),
    ).run()
    return 0


#: Results asked for per page (the hub's largest page).
SEARCH_PAGE = 200


def _search_logs(
    args: argparse.Namespace, client: HubClient, paint: Painter, say: Say, notice: Say
) -> int:
    """Print matching lines newest first, page by page, up to ``--limit``."""
    params: dict[str, str | None] = {
        "q": args.query,
        "project": args.project,
        "deployment_id": args.deployment_id,
        "job": args.job,
        "step": args.step,
        "level": args.level,
        "since": args.since,
        "until": args.until,
    }
    shown = 0
    cursor: str | None = None
    while shown < args.limit:
        page = client.get(
            "/logs/search",
            {**params, "limit": str(min(SEARCH_PAGE, args.limit - shown)), "cursor": cursor},
        )
        for hit in page["items"]:
            if args.json:
                say(_json_text(hit))
            else:
                for line in search_hit_lines(hit, paint, client.base_url):
                    say(line)
        shown += len(page["items"])
        cursor = page.get("next_cursor")
        if page.get("truncated"):
            notice("the hub stopped at its search bound; older lines may match too")
        if not cursor:
            break
    if not shown:
        notice("no log line matches")
    return 0


def _replay(args: argparse.Namespace, client: HubClient, env: Mapping[str, str], say: Say) -> int:
    from hubctl.replay import read_file, replay, to_bodies

    if args.from_hub:
        source = HubClient(
            args.from_hub,
            read_token=env.get("DASHBOARD_SOURCE_READ_TOKEN"),
            timeout=args.timeout,
            attempts=client.attempts,
        )
        events = source.events(
            project=args.project, deployment_id=args.deployment_id, since=args.since
        )
    else:
        events = read_file(args.file)
    if args.dry_run:
        for event in events:
            for route, body in to_bodies(event):
                say(_json_text({"route": route, "body": body}))
        return 0
    count, posted = replay(events, client)
    if posted.duplicate:
        say(f"replayed {count} events: all were already on {client.base_url}")
    else:
        say(f"replayed {count} events to {client.base_url}")
    return 0


def _watch(
    args: argparse.Namespace, client: HubClient, env: Mapping[str, str], say: Say, notice: Say
) -> int:
    from hubctl.watch import GitHub, Watcher

    if not args.run_id.isdigit():
        raise CommandError(f"--run-id must be a run's number, not {args.run_id[:100]!r}")
    token = env.get("GITHUB_TOKEN") or env.get("GH_TOKEN")
    if not token:
        notice("GITHUB_TOKEN is not set: public repositories only, and no job logs")
    github = GitHub(
        repo=args.repo,
        token=token,
        api_url=args.api_url,
        timeout=args.timeout,
        max_wait=args.max_wait,
        attempts=args.retries + 1,
        notice=notice,
    )
    watcher = Watcher(
        github, client, args.run_id, project=args.project, interval=args.interval, say=say
    )
    run = watcher.watch(once=args.once)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(watcher.counts.items())) or "nothing new"
    state = run.get("conclusion") or run.get("status")
    repeated = f" ({watcher.repeated} the hub already had)" if watcher.repeated else ""
    say(f"run {args.run_id} {state}: sent {counts}{repeated}")
    return 0
