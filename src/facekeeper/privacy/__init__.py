"""Privacy by construction: consent per purpose, purpose-bound matching, retention, erasure, audit.

``Privacy`` (``core.py``) is what ``service.py`` talks to. The rule each module serves is in
docs/privacy.md.
"""

from facekeeper.privacy.consent import Consent, ConsentForm, Guardian
from facekeeper.privacy.core import Privacy, SweepReport, WithdrawResult
from facekeeper.privacy.policy import Actor

__all__ = ["Actor", "Consent", "ConsentForm", "Guardian", "Privacy", "SweepReport", "WithdrawResult"]
