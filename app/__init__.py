"""The webhook receiver and the read API: Flask blueprints, wire formats, auth and limits.

The app is assembled by ``server.create_app``; nothing here imports the fan-out.
"""
