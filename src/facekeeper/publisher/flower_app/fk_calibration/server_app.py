"""The vendor's ServerApp: one round of SecAgg+ over every site's release; writes the sum and nothing else.

Legacy strategy path (SecAgg+ is only wired there in Flower 1.42): ``LegacyContext`` +
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``. The strategy never asks a client for its
parameters (it starts from zeros it builds itself) and evaluates nothing, so the only message carrying a
site's data is SecAgg+'s masked vector. ``aggregate_fit`` receives the unmasked average; times the number
of sites it is the exact integer sum, written to ``out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from fk_calibration import CLIP, MODULUS, QUANTIZATION

app = ServerApp()
# Every site shares its secrets with every other (num_shares 1.0 = all); unmasking needs two thirds of them,
# so a site that drops out after sending does not sink the round, and the vendor would have to collude
# with that many sites to see one site's vector.
THRESHOLD = 0.67


class Sum(FedAvg):
    def __init__(self, out: Path, sites: int, length: int) -> None:
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=sites, min_evaluate_clients=0,
                         min_available_clients=sites,
                         initial_parameters=ndarrays_to_parameters([np.zeros(length)]))
        self.out = out

    def aggregate_fit(self, server_round, results, failures):
        if failures or not results:
            return None, {}
        mean = parameters_to_ndarrays(results[0][1].parameters)[0]
        total = np.rint(mean * len(results)).astype(np.int64)
        doc = {"sites": len(results), "vector": total.tolist(), "completed_at": time.time()}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.out)
        return results[0][1].parameters, {}


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    sites, length = int(cfg["num-sites"]), int(cfg["vector-length"])
    strategy = Sum(Path(str(cfg["out"])), sites, length)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=1.0, reconstruction_threshold=THRESHOLD, max_weight=1.0, clipping_range=float(CLIP),
        quantization_range=QUANTIZATION, modulus_range=MODULUS, timeout=float(cfg["timeout"])))
    workflow(grid, legacy)
    out = Path(str(cfg["out"]))
    if not out.exists():  # SecAgg+ halted (it logs and returns; the run still "succeeds"): say so
        out.write_text(json.dumps({"halted": True, "completed_at": time.time()}), encoding="utf-8")
