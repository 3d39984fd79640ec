"""What other systems send, turned into the hub's typed wire bodies.

Each module translates one sender's native payloads (GitHub's runs and jobs,
and more) into the bodies any sender may post to ``/api/webhooks/deployment``.
Pure: the webhook routes and ``hubctl`` both use them, and neither the server
nor a client needs the other to do so.
"""
