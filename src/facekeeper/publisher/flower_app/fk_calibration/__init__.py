"""facekeeper's federated calibration round as a Flower App (ClientApp + ServerApp, SecAgg+)."""

# Both sides must agree on these: counts are integers in [-CLIP, CLIP]; SecAgg+ quantises with exactly one
# step per count (QUANTIZATION = 2 * CLIP), so the sum it reveals is the exact integer sum.
CLIP = 2**24
QUANTIZATION = 2 * CLIP
MODULUS = 2**32  # room for 128 sites: 128 * QUANTIZATION = MODULUS
