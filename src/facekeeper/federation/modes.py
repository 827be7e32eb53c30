"""The matching modes a site calibrates, each as "which models' distances, combined how" (``pairs.Mode``)."""

from __future__ import annotations

from facekeeper.bundle import Bundle
from facekeeper.federation.pairs import Mode


def site_modes(model_id: str, bundle: Bundle) -> list[Mode]:
    """``fast``: the engine's model alone, decided with the bundle's table for that model."""
    return [Mode("fast", model_id, (model_id,))]
