"""Where events and the deployment view are kept: the store interface and its two stores.

The stores persist and query what the ledger (``ledger/``) decides; they import
no Flask, no fan-out and no metrics (they report through :class:`StoreHooks`).
"""
