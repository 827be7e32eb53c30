"""The site's ClientApp: hand facekeeper's prepared release to SecAgg+, and note how far the round got.

facekeeper (``facekeeper federate join``) computed the histograms, added the DP noise, charged the privacy
budget and audited the release before this process started; the path of that release comes in the node
config (``payload``). This process holds no key and no template. ``secaggplus_mod`` masks the vector, so
what leaves is uniformly random modulo 2^32 on its own; only the sum over all sites unmasks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, Message

from fk_calibration import CLIP

STAGE_RECORD = "secaggplus_configs"


class Release(NumPyClient):
    def __init__(self, payload: Path) -> None:
        self.payload = payload

    def fit(self, parameters, config):
        vector = np.load(self.payload).astype(np.int64)
        if vector.shape != parameters[0].shape or np.abs(vector).max(initial=0) > CLIP:
            raise ValueError("the prepared release does not fit this round (length or range)")
        # weight 1 of max_weight 1: SecAgg+ then sums the vectors as they are (its average times the count)
        return [vector.astype(np.float64)], 1, {}


def client_fn(context: Context) -> Client:
    return Release(Path(str(context.node_config["payload"]))).to_client()


def stage_log(msg: Message, context: Context, call_next) -> Message:
    """Outermost mod: append each SecAgg+ stage this node completed to the node's status file."""
    record = msg.content.config_records.get(STAGE_RECORD) if msg.content else None
    stage = None if record is None else record.get("stage")  # read first: secaggplus_mod pops it
    reply = call_next(msg, context)
    status = context.node_config.get("status")
    if status and stage:
        with open(str(status), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": stage, "ok": not reply.has_error(), "at": time.time()}) + "\n")
    return reply


app = ClientApp(client_fn=client_fn, mods=[stage_log, secaggplus_mod])
