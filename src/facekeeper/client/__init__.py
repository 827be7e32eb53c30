"""The Python SDK: a typed client for the facekeeper HTTP service, and the edge-mode terminal helper.

``Client`` wraps every ``/v1`` route and raises the same ``facekeeper.errors`` classes the service raised
(the problem's ``code`` names the class). ``EdgeTerminal`` computes descriptors on the terminal so that
photos never leave it (see docs/deployment.md, "Edge mode").
"""

from facekeeper.client.client import Client
from facekeeper.client.edge import EdgeTerminal

__all__ = ["Client", "EdgeTerminal"]
