"""The Ray cluster tier (``index.backend = ray``): sharded 1:N search and bulk face preparation.

PostgreSQL stays the source of truth; Ray only holds copies it can rebuild. ``runtime.connect`` is the
one way in, so Ray never reaches past the operator's network.
"""
