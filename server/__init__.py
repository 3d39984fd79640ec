"""The hub's entry points: the app factory (``server.app``), gunicorn's settings
(``server.gunicorn_conf``) and the commands that start and look after a hub.

Importing this package imports nothing else: gunicorn reads
``server.gunicorn_conf`` before any metric exists, which is what lets it choose
prometheus-client's multiprocess mode.
"""
