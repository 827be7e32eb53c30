"""Template protection: the only module that touches AES.

Two steps, both keyed by the deployment:
1. a secret orthogonal rotation of the descriptor. Euclidean distances are unchanged, so accuracy is
   unchanged, but a template from one deployment means nothing in another (unlinkability);
2. AES-256-GCM sealing under the subject's own data key, so destroying that key destroys the template
   everywhere it was copied (crypto-shredding).
"""

from __future__ import annotations

import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facekeeper.gallery.keys import DeploymentKey

NONCE_BYTES = 12


class SealError(Exception):
    """Ciphertext that does not open with the key given: wrong key, erased key, or tampering."""


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate; ``aad`` binds the ciphertext to its context (subject, record)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise SealError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SealError("ciphertext does not open with this key") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def vector_to_bytes(vec: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(vec, dtype="<f4").ravel()
    return struct.pack("<H", arr.size) + arr.tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    (n,) = struct.unpack_from("<H", data)
    if len(data) != 2 + 4 * n:
        raise SealError("template length does not match its header")
    return np.frombuffer(data, dtype="<f4", offset=2, count=n).astype(np.float32)


class OrthogonalTransform:
    """A secret, deterministic random rotation R (R^T R = I) of descriptor space, one per model size.

    R comes from the QR decomposition of a Gaussian matrix whose entries are drawn from a ChaCha20
    keystream keyed by the deployment key, so it is the same in every process of the deployment and on
    every numpy version, and unknowable without the key.
    """

    def __init__(self, key: DeploymentKey, dim: int, model_id: str) -> None:
        self.dim = dim
        seed = key.derive(f"transform/{model_id}/{dim}")
        n = dim * dim
        stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor().update(b"\0" * (8 * n))
        u = (np.frombuffer(stream, dtype="<u4").astype(np.float64) + 0.5) / 2.0**32
        u1, u2 = u[:n], u[n:]
        gauss = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        q, r = np.linalg.qr(gauss.reshape(dim, dim))
        # fix the signs so the decomposition (and therefore R) is unique
        self._matrix = (q * np.sign(np.diag(r))).astype(np.float32)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate (N, dim) or (dim,) descriptors."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim}-d descriptors, got {v.shape[-1]}")
        return v @ self._matrix
