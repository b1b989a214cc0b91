"""An offline stand-in for OneInbox: its HTTP API and a LiveKit-compatible voice server.

Needs the ``emulator`` extra (``pip install 'oneinbox-asgi[emulator]'``).
"""
