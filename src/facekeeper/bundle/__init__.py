"""What the vendor ships and signs, checked on the customer's premises: model bundle and license.

Only verification lives here; signing is ``facekeeper.publisher``'s, and no private key is ever needed to
run facekeeper.
"""

from facekeeper.bundle.license import License, LicenseStatus, Licensing
from facekeeper.bundle.manifest import Bundle, ModelEntry, load_trusted_bundle, verify_bundle
from facekeeper.bundle.trust import TrustedKey

__all__ = ["Bundle", "License", "LicenseStatus", "Licensing", "ModelEntry", "TrustedKey", "load_trusted_bundle",
           "verify_bundle"]
