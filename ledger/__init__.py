"""The event model and the rules that turn events into the deployment view.

Pure: nothing here does I/O or imports Flask, gevent, Redis or Prometheus, so
the stores, the web app, the fan-out and ``hubctl`` can all build on it.
"""
