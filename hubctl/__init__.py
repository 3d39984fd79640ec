"""``hubctl``: the hub's command-line client.

Pipelines and people use it to send events (``send``, ``replay``), to watch
them live (``tail``, over the hub's raw WebSocket), to see a deployment's
job/step tree (``status``), and to turn a GitHub Actions run into step-level
events (``github watch``).  It needs nothing the hub's own package does not
already install; the GitHub translation is the hub's own (``senders/github.py``).
"""
