"""SAELens' own training step on this machine's CPU: `training_forward_pass` + backward + gradient clipping +
Adam, as its trainer takes it, on random activations. Runs in the SAELens environment (not CI's; see
bench/sae_bench.py), prints one JSON line per architecture.

    python bench/sae_lens_step.py [--d-in 768] [--d-sae 16384] [--batch 4096] [--k 32] [--steps 3] [--threads 2]
"""

import argparse
import json
import statistics
import time

import torch
import sae_lens
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--architectures", default="topk,standard")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.rand(a.batch, a.d_in) * 2 - 1
    for arch in a.architectures.split(","):
        if arch == "topk":
            sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=a.d_in, d_sae=a.d_sae, k=a.k, dtype="float32", device="cpu"))
            coefficients = {}
        else:
            sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=a.d_in, d_sae=a.d_sae, l1_coefficient=1.0, dtype="float32", device="cpu"))
            coefficients = {"l1": 1.0}
        opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
        dead = torch.zeros(a.d_sae, dtype=torch.bool)

        def step(i: int) -> float:
            out = sae.training_forward_pass(
                TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=dead, n_training_steps=i, is_logging_step=False)
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(out.loss.detach())

        step(0)  # warm-up
        seconds = []
        for i in range(a.steps):
            t = time.perf_counter()
            loss = step(i + 1)
            seconds.append(time.perf_counter() - t)
        median = statistics.median(seconds)
        print(json.dumps({
            "impl": "SAELens", "version": sae_lens.__version__, "torch": torch.__version__, "architecture": arch,
            "d_in": a.d_in, "d_sae": a.d_sae, "batch": a.batch, "k": a.k, "threads": a.threads,
            "seconds_per_step": median, "seconds": seconds, "tokens_per_s": a.batch / median, "loss": loss,
        }), flush=True)


if __name__ == "__main__":
    main()
