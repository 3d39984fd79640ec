"""The Argo CD notification templates of docs/SENDERS.md, and what they render to.

The test renders the documented templates with a small stand-in for Go's
``text/template`` that knows only what the templates use: ``{{.a.b}}``,
``{{.a.b | toJson}}`` and ``{{with .a.b}}...{{end}}`` (inside it, ``{{.}}`` and
``{{.c}}``).  Anything else in a template fails the test, so the documented
templates stay within what is checked.  As in Go, a missing map key prints
``<no value>`` and ``toJson`` of it is ``null``; ``toJson`` escapes ``<``, ``>``
and ``&`` as Go's ``json.Marshal`` does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import ROOT

SENDERS = ROOT / "docs" / "SENDERS.md"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
#: The documented templates, by name, and the sample application's state each is sent in.
TEMPLATES = {
    "dashboard-hub-sync-running": "running",
    "dashboard-hub-sync-succeeded": "succeeded",
    "dashboard-hub-sync-failed": "failed",
    "dashboard-hub-health-degraded": "degraded",
}

_MISSING = object()
_WITH = re.compile(r"\{\{with (\.[\w.]+)\}\}(.*?)\{\{end\}\}")
_ACTION = re.compile(r"\{\{(\.[\w.]*?)( \| toJson)?\}\}")


def documented_configmap() -> str:
    """The ``argocd-notifications-cm`` block of the Argo CD section of SENDERS.md."""
    text = SENDERS.read_text()
    section = text[text.index("## Argo CD") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    return section[start : section.index("```", start)]


def documented_bodies() -> dict[str, str]:
    """Each template's webhook body, as the ConfigMap's YAML block scalar holds it."""
    lines = documented_configmap().split("\n")
    bodies: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(r"  template\.([\w-]+): \|", line)
        if not match:
            continue
        at = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "body: |")
        indent = len(lines[at + 1]) - len(lines[at + 1].lstrip())
        body = []
        for following in lines[at + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            body.append(following[indent:])
        bodies[match[1]] = "\n".join(body).rstrip("\n") + "\n"
    return bodies


def lookup(root: Any, path: str) -> Any:
    value = root
    for part in path.strip(".").split("."):
        if not part:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{path}: evaluating a field of a non-map would fail in Go")
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _text(value: Any) -> str:
    return "<no value>" if value is _MISSING or value is None else str(value)


def _to_json(value: Any) -> str:
    dumped = json.dumps(None if value is _MISSING else value, ensure_ascii=False)
    return dumped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(template: str, data: dict[str, Any]) -> str:
    """``template`` rendered with ``data`` (``{"app": ..., "context": ...}``)."""

    def with_block(match: re.Match[str]) -> str:
        value = lookup(data, match[1])
        if value is _MISSING or not value:
            return ""
        return _ACTION.sub(lambda inner: _action(value, inner), match[2])

    def _action(root: Any, match: re.Match[str]) -> str:
        value = root if match[1] == "." else lookup(root, match[1])
        return _to_json(value) if match[2] else _text(value)

    rendered = _WITH.sub(with_block, template)
    rendered = _ACTION.sub(lambda match: _action(data, match), rendered)
    if "{{" in rendered:
        raise ValueError(f"a template action this stand-in does not know: {rendered}")
    return rendered


def sample(state: str) -> dict[str, Any]:
    loaded = json.loads((FIXTURES / "sample-application.json").read_text())
    return {"app": loaded[state], "context": loaded["context"]}


def rendered_name(template: str) -> str:
    return f"{template.removeprefix('dashboard-hub-')}.json"


def write_rendered() -> None:
    """Write what each documented template renders for the sample into the fixtures."""
    bodies = documented_bodies()
    for name, state in TEMPLATES.items():
        (FIXTURES / rendered_name(name)).write_text(render(bodies[name], sample(state)))
