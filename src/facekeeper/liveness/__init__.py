"""Active, challenge-response liveness: a photo or a video of a customer must not pay or withdraw cash."""
