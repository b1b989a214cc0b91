"""Glue for frameworks whose idiomatic mount is not an ASGI middleware around the app.

Each module imports its framework; nothing here is imported by ``oneinbox_asgi`` itself,
so an app that does not use a framework never imports it.
"""
