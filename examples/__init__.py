"""Runnable example apps, one per framework; see README.md."""
