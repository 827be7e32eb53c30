"""The on-premises HTTP service: a versioned REST API (``/v1``) over ``service.py``, for many tenants.

Routes only translate HTTP to ``Service`` calls and back; who may call what is decided by the API key
(tenant, role, optional purpose) and by the privacy layer behind ``Service``. See docs/deployment.md.
"""
