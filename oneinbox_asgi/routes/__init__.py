"""The broker's two POST routes: ``start-call`` and ``end-call``.

Each reads top to bottom as the contract describes it; per-request state lives in
the route's locals. Refusals are raised where they are found and answered in one
place per route, with exactly one audit line.
"""
