"""Alerts to chat and webhooks when a deployment fails, runs too long, or a step stalls.

People do not watch a dashboard all day; they watch a chat channel.  Three
causes raise an alert, each at most once per deployment (per step for a
stall), remembered in a small SQLite table so that a restart sends nothing
twice:

* ``failed``: a ``deployment_completed`` event with status ``failure``;
* ``long_running``: still running after ``HUB_ALERT_LONG_RUNNING_SECONDS``,
  or after ``HUB_ALERT_LONG_RUNNING_P95_FACTOR`` times the p95 duration of the
  project's recent successful deployments (whichever is reached first);
* ``stalled``: a step running while its deployment has had no news (no event
  of any type received) for ``HUB_ALERT_STALLED_STEP_SECONDS`` (the rule of
  stale runs, ``ledger/staleness.py``, at the alert's own threshold).

``rules.py`` decides, ``state.py`` remembers, ``delivery.py`` sends and
``runner.py`` wires them to the store and the hub.
"""
