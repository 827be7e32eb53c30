"""Edge mode: a terminal that must not send photos computes the descriptor itself and sends only that.

The terminal runs the same engine (and checks the same signed model bundle) as the service, turns the
camera frame into a 128-number descriptor in its own memory, drops the frame, and sends the descriptor
with the model id over TLS. The service protects it with the deployment's keyed rotation and searches.
The terminal holds no deployment secret: a stolen terminal gives its API key (revocable) and nothing that
opens or links the gallery. Why not a per-device transform: see docs/deployment.md, "Edge mode".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from facekeeper.api import schemas
from facekeeper.api.routes.liveness import LivenessOut, SessionOut
from facekeeper.bundle import load_trusted_bundle
from facekeeper.client.client import Client, ImageInput, image_bytes
from facekeeper.config import EngineSettings
from facekeeper.engine import Engine


class EdgeTerminal:
    """A gate or till: ``identify(photo)`` and ``verify(photo, subject_id)`` send descriptors, never photos."""

    def __init__(self, client: Client, *, purpose: str | None = None, engine: Engine | None = None) -> None:
        load_trusted_bundle()  # the terminal runs only the models the vendor signed, like the service
        self.client = client
        self.purpose = purpose
        self.engine = engine or Engine(EngineSettings())

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def descriptor(self, image: ImageInput) -> np.ndarray:
        """The probe's descriptor, computed here; the decoded pixels are dropped on return."""
        descriptor, _face = self.engine.template(image_bytes(image))
        return descriptor

    def identify(self, image: ImageInput, *, k: int | None = None,
                 fpir: float | None = None) -> schemas.IdentifyAnswer:
        """1:N; with a device key the answer is ``DeviceIdentified``: the matched subject's id or unknown."""
        return self.client.identify_template(self.descriptor(image), self.model_id, purpose=self.purpose, k=k,
                                             fpir=fpir)

    def verify(self, image: ImageInput, subject_id: str, *, fmr: float | None = None) -> schemas.VerifyAnswer:
        """1:1; with a device key the answer is ``DeviceVerified``: match or not, no score."""
        return self.client.verify_template(self.descriptor(image), self.model_id, subject_id, purpose=self.purpose,
                                           fmr=fmr)

    # -- purposes that require liveness (payment, withdrawal) -------------------------------------
    def liveness(self, capture: Callable[[SessionOut], tuple[Sequence[ImageInput], Sequence[float]]], *,
                 subject_id: str | None = None, steps: int | None = None) -> LivenessOut:
        """Run a liveness session: start it, let ``capture`` show the challenge (each action ``step_seconds``
        apart) and return the frames it recorded with their times, send them. A descriptor cannot prove
        that a live person stood at the terminal, so these frames do leave it, once, for this decision."""
        session = self.client.liveness_start(purpose=self.purpose, subject_id=subject_id, steps=steps)
        frames, times = capture(session)
        return self.client.liveness_submit(session.session_id, session.nonce, frames, times)

    def verify_live(self, image: ImageInput, subject_id: str, session_id: str) -> schemas.VerifyAnswer:
        """1:1 after a live session: the photo goes to the service, which checks it is the session's face."""
        return self.client.verify(image, subject_id=subject_id, purpose=self.purpose, liveness_session=session_id)
