"""Where the limits live: the ``LimitStore`` interface, in process or in Redis.

``config`` picks one from the ``store`` option; ``guards.limits`` applies the limits
through it. The public names are re-exported by ``oneinbox_asgi.guards``.
"""
