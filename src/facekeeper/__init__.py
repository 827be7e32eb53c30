"""facekeeper: on-premises face recognition where the faces never leave."""

from facekeeper import telemetry

telemetry.switch_off()  # before any submodule can import onnxruntime (see telemetry.py)
