"""The PyTorch (HF transformers, CPU) forward-throughput baseline that saekit's candle models are measured
against: tokens per second to compute the residual stream after block L (TransformerLens
`blocks.L.hook_resid_post`) of a GPT-2 or BERT model, on random token ids.

    /var/tmp/saekit-bench-venv/bin/python bench/models_torch.py --model DIR \
        [--batch 8] [--seq 128] [--threads 2] [--layer 6] [--reps 5] [--seed 0]
    /var/tmp/saekit-bench-venv/bin/python bench/models_torch.py --make-gpt2-small DIR [--seed 0]

The Rust bench runs it once per (model, threads) point with the same shape as its own run and reads the
one JSON line it prints: impl, torch, transformers, model_type, attn_implementation, threads, batch, seq,
layer, reps, tokens_per_s (batch*seq / median rep), seconds (each rep, after one untimed warm-up).

`--model DIR` is an HF folder (config.json + model.safetensors), loaded with AutoModel (GPT-2 → GPT2Model,
BERT → BertModel) in float32 with the library's default attention (sdpa). For fairness the model is cut to
what a hook at block L needs: blocks 0..L only (`model.h[:L+1]`, `model.encoder.layer[:L+1]`), no final
ln_f (GPT-2) and no pooler (BERT), no KV cache. The forward runs under torch.inference_mode() with
torch.set_num_threads(T) on ids drawn with torch.manual_seed(seed).

`--make-gpt2-small DIR` writes a randomly initialised GPT2Config() model (12 layers, 768 wide, 12 heads,
vocab 50257, 1024 positions) with save_pretrained(DIR, safe_serialization=True), so that the Rust side
loads the very same weights. The environment is bench/models_requirements.txt (not CI's).
"""
import argparse
import json
import statistics
import time

import torch
import transformers


def make_gpt2_small(out_dir: str, seed: int) -> dict:
    """A randomly initialised GPT-2-small (GPT2Config defaults), saved as config.json + model.safetensors."""
    torch.manual_seed(seed)
    model = transformers.GPT2Model(transformers.GPT2Config())
    model.save_pretrained(out_dir, safe_serialization=True)
    return {"wrote": out_dir, "seed": seed, "parameters": sum(p.numel() for p in model.parameters())}


def truncate(model, layer: int):
    """Keeps blocks 0..layer and drops what follows the last block, so the output is hook_resid_post."""
    kind = model.config.model_type
    if kind == "gpt2":
        blocks = model.h
        model.h = blocks[:layer + 1]
        model.ln_f = torch.nn.Identity()
        model.config.n_layer = layer + 1
    elif kind == "bert":
        blocks = model.encoder.layer
        model.encoder.layer = blocks[:layer + 1]
        model.pooler = None
        model.config.num_hidden_layers = layer + 1
    else:
        raise SystemExit(f"unsupported model_type {kind!r} (gpt2 or bert)")
    if not 0 <= layer < len(blocks):
        raise SystemExit(f"--layer {layer} is out of range: the model has {len(blocks)} blocks")
    return model


def bench(args) -> dict:
    torch.set_num_threads(args.threads)
    model = transformers.AutoModel.from_pretrained(args.model, dtype=torch.float32)
    model = truncate(model.eval(), args.layer)
    torch.manual_seed(args.seed)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq))
    extra = {"use_cache": False} if model.config.model_type == "gpt2" else {}

    def forward():
        with torch.inference_mode():
            out = model(input_ids=ids, **extra).last_hidden_state
        assert out.shape == (args.batch, args.seq, model.config.hidden_size)

    forward()  # warm-up, untimed
    seconds = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        forward()
        seconds.append(time.perf_counter() - t0)
    return {
        "impl": "torch", "torch": torch.__version__, "transformers": transformers.__version__,
        "model_type": model.config.model_type, "attn_implementation": model.config._attn_implementation,
        "threads": torch.get_num_threads(), "batch": args.batch, "seq": args.seq, "layer": args.layer,
        "reps": args.reps, "tokens_per_s": args.batch * args.seq / statistics.median(seconds),
        "seconds": [round(s, 5) for s in seconds],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an HF folder: config.json + model.safetensors (gpt2 or bert)")
    ap.add_argument("--make-gpt2-small", metavar="DIR", help="write a random GPT-2-small to DIR and exit")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--layer", type=int, default=6, help="run blocks 0..LAYER (hook_resid_post of LAYER)")
    ap.add_argument("--reps", type=int, default=5, help="timed reps after one warm-up")
    ap.add_argument("--seed", type=int, default=0, help="seeds the random ids (or the random weights)")
    args = ap.parse_args()
    transformers.logging.disable_progress_bar()  # stderr stays quiet for the Rust bench

    if args.make_gpt2_small:
        print(json.dumps(make_gpt2_small(args.make_gpt2_small, args.seed)), flush=True)
    elif args.model:
        print(json.dumps(bench(args)), flush=True)
    else:
        ap.error("give --model DIR or --make-gpt2-small DIR")


if __name__ == "__main__":
    main()
