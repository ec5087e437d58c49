"""Independent numpy references for the language models `saekit model` runs, written from the published
architectures (HF transformers' GPT2Model, LlamaForCausalLM / Qwen2, BertModel + sentence-transformers pooling),
not from saekit's Rust. Everything here is plain Python + numpy:

* a small safetensors reader/writer (F64, F32, F16, BF16 as uint16 bit patterns, I64, I32, U8, BOOL);
* forward passes for the three families in float64 that return every TransformerLens hook, plus logits, the
  next-token loss and (BERT) the pooled, L2-normalised sentence embedding; right-padded ragged batches and the
  `--scale HOOK=F` semantics (the value at HOOK is multiplied by F, everything downstream sees it, and the
  captured value is the scaled one) are supported;
* builders for tiny random models in HF layout (config.json + model.safetensors + tokenizer.json).

`precision` ("f64", "f32", "f16", "bf16") rounds the weights and the output of every operation to that
format while computing in float64: an emulation of a lower-precision implementation, used only to size the
tolerances of the parity tests, never as the reference itself.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------------

# dtype name -> (numpy dtype used for the raw little-endian bytes, bytes per element)
_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bit patterns; see bf16_bits_to_f32
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


class BF16:
    """Marks a uint16 array of bfloat16 bit patterns for write_safetensors."""

    def __init__(self, bits):
        self.bits = np.ascontiguousarray(bits, dtype=np.uint16)

    @classmethod
    def from_float(cls, x):
        return cls(f32_to_bf16_bits(x))

    @property
    def shape(self):
        return self.bits.shape


def f32_to_bf16_bits(x) -> np.ndarray:
    """Round float values to bfloat16 (round to nearest, ties to even), returning the uint16 bit patterns."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(np.ascontiguousarray(x, dtype=np.float32))
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(np.uint16)


def bf16_bits_to_f32(bits) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _dtype_name(arr: np.ndarray) -> str:
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    names = {("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16",
             ("i", 1): "I8", ("u", 1): "U8", ("b", 1): "BOOL"}
    if (kind, size) not in names:
        raise TypeError(f"no safetensors dtype for numpy {arr.dtype}")
    return names[(kind, size)]


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write `tensors` (name -> numpy array or BF16) in the standard layout: u64 LE header size, JSON header
    (padded with spaces to a multiple of 8), then the tensors' bytes back to back in the given order."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        if isinstance(value, BF16):
            dtype, shape, raw = "BF16", list(value.bits.shape), value.bits.astype("<u2").tobytes()
        else:
            arr = np.asarray(value)
            dtype = _dtype_name(arr)
            shape = list(arr.shape)
            raw = np.ascontiguousarray(arr, dtype=_ST_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors_raw(path):
    """(tensors, dtypes, metadata): tensors as numpy arrays in their stored type (BF16 as uint16 bits)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header of {n} bytes runs past the end of the file")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n :]
    tensors, dtypes = {}, {}
    spans = []
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        npdt = _ST_DTYPES[dtype]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = math.prod(shape)
        if end - begin != count * npdt.itemsize or end > len(body) or begin > end:
            raise ValueError(f"{path}: tensor {name} has offsets {begin}..{end} that do not fit {dtype}{list(shape)}")
        spans.append((begin, end))
        tensors[name] = np.frombuffer(body[begin:end], dtype=npdt, count=count).reshape(shape).copy()
        dtypes[name] = dtype
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError(f"{path}: tensor data is not contiguous (gap or overlap at byte {begin})")
        pos = end
    if pos != len(body):
        raise ValueError(f"{path}: {len(body) - pos} trailing bytes after the last tensor")
    return tensors, dtypes, metadata


def read_safetensors(path, as_float64: bool = False) -> dict:
    """name -> numpy array; BF16 and F16 are widened to float32 (float64 with as_float64 for every float)."""
    tensors, dtypes, _ = read_safetensors_raw(path)
    out = {}
    for name, arr in tensors.items():
        if dtypes[name] == "BF16":
            arr = bf16_bits_to_f32(arr)
        elif dtypes[name] == "F16":
            arr = arr.astype(np.float32)
        if as_float64 and arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        out[name] = arr
    return out


# --------------------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------------------

GPT2_FAMILY, LLAMA_FAMILY, BERT_FAMILY = "gpt2", "llama", "bert"


def hook_names(family: str, n_layers: int) -> list[str]:
    """Every hook saekit exposes for a family, in forward order."""
    names = ["hook_embed"]
    if family in (GPT2_FAMILY, BERT_FAMILY):
        names.append("hook_pos_embed")
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.hook_resid_pre",
            f"blocks.{layer}.hook_attn_out",
            f"blocks.{layer}.hook_resid_mid",
            f"blocks.{layer}.mlp.hook_post",
            f"blocks.{layer}.hook_mlp_out",
            f"blocks.{layer}.hook_resid_post",
        ]
    if family in (GPT2_FAMILY, LLAMA_FAMILY):
        names.append("ln_final.hook_normalized")
    return names


def pad_batch(seqs) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad integer sequences with 0: (ids [B, T] int64, lengths [B] int64)."""
    seqs = [list(map(int, s)) for s in seqs]
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("every sequence needs at least one token")
    T = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), T), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    return ids, np.array([len(s) for s in seqs], dtype=np.int64)


def valid_mask(lengths, T) -> np.ndarray:
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _rounder(precision: str | None):
    if precision in (None, "f64"):
        return lambda x: np.asarray(x, dtype=np.float64)
    if precision == "f32":
        return lambda x: np.asarray(x, dtype=np.float32).astype(np.float64)
    if precision == "f16":
        return lambda x: np.asarray(x, dtype=np.float16).astype(np.float64)
    if precision == "bf16":
        return lambda x: bf16_bits_to_f32(f32_to_bf16_bits(x)).astype(np.float64)
    raise ValueError(f"unknown precision {precision!r}")


class _Hooks:
    """Applies --scale at each hook point (a factor, or a function of the activations that replaces them)
    and records the (scaled) value."""

    def __init__(self, valid: list[str], scale: dict | None):
        self.valid = set(valid)
        self.scale = dict(scale or {})
        unknown = sorted(set(self.scale) - self.valid)
        if unknown:
            raise KeyError(f"unknown hooks {unknown}")
        self.acts: dict[str, np.ndarray] = {}

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        assert name in self.valid, name
        if name in self.scale:
            s = self.scale[name]
            x = s(x) if callable(s) else x * float(s)
        self.acts[name] = x
        return x


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased variance, as torch.nn.LayerNorm
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def gelu_tanh(x):
    """GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x):
    """BERT's gelu: x·Φ(x) = 0.5·x·(1 + erf(x/√2)), exact erf."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def attention(q, k, v, lengths, causal: bool, q_round):
    """q [B,T,H,hd]; k, v [B,T,H,hd] (kv heads already expanded). Keys past each sequence's length are masked
    out; with causal, keys after the query too. Softmax(q·k/√hd)·v, returned as [B,T,H,hd]."""
    B, T, H, hd = q.shape
    scores = q_round(np.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(hd))
    masked = ~valid_mask(lengths, T)[:, None, None, :]  # [B,1,1,T] padded keys
    if causal:
        masked = masked | (np.arange(T)[None, :] > np.arange(T)[:, None])[None, None]
    scores = np.where(masked, -np.inf, scores)
    # A padded query row attends to valid keys only (never all masked since every length >= 1).
    probs = q_round(softmax(scores, axis=-1))
    return q_round(np.einsum("bhij,bjhd->bihd", probs, v))


def lm_loss(logits, ids, lengths):
    """(loss, token_losses [B, T-1]): −log softmax(logits[b,t])[ids[b,t+1]] for t < len−1, 0 elsewhere; the
    loss is the mean over those valid (b, t)."""
    B, T, _ = logits.shape
    token_losses = np.zeros((B, max(T - 1, 0)), dtype=np.float64)
    if T < 2:
        return float("nan"), token_losses
    lsm = log_softmax(logits[:, :-1, :].astype(np.float64), axis=-1)
    nll = -np.take_along_axis(lsm, ids[:, 1:, None], axis=-1)[..., 0]
    valid = np.arange(T - 1)[None, :] < (np.asarray(lengths)[:, None] - 1)
    token_losses[valid] = nll[valid]
    count = int(valid.sum())
    loss = float(token_losses[valid].sum() / count) if count else float("nan")
    return loss, token_losses


def _weights64(path: Path) -> dict:
    return read_safetensors(path, as_float64=True)


# --------------------------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------------------------


def load_gpt2(model_dir) -> tuple[dict, dict]:
    """(config, weights) with names stripped of a `transformer.` prefix and the attention mask buffers
    (`h.N.attn.bias`, `h.N.attn.masked_bias`) dropped."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = {}
    for name, arr in _weights64(model_dir / "model.safetensors").items():
        if name.startswith("transformer."):
            name = name[len("transformer.") :]
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias") or name == "lm_head.weight":
            continue
        weights[name] = arr
    return config, weights


def gpt2_forward(config: dict, weights: dict, seqs, scale=None, precision="f64") -> dict:
    q = _rounder(precision)
    W = {k: q(v) for k, v in weights.items()}
    D, H, n_layers = config["n_embd"], config["n_head"], config["n_layer"]
    eps = config.get("layer_norm_epsilon", 1e-5)
    if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise NotImplementedError(config["activation_function"])
    hd = D // H
    ids, lengths = pad_batch(seqs)
    B, T = ids.shape
    if T > config["n_positions"]:
        raise ValueError(f"sequence of {T} tokens is longer than n_positions {config['n_positions']}")
    run = _Hooks(hook_names(GPT2_FAMILY, n_layers), scale)

    embed = run("hook_embed", W["wte.weight"][ids])
    pos = run("hook_pos_embed", np.broadcast_to(W["wpe.weight"][:T], (B, T, D)).copy())
    x = q(embed + pos)
    for L in range(n_layers):
        p = f"h.{L}."
        x = run(f"blocks.{L}.hook_resid_pre", x)
        h = q(layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps))
        qkv = q(h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"])
        qh, kh, vh = (qkv[..., i * D : (i + 1) * D].reshape(B, T, H, hd) for i in range(3))
        z = attention(qh, kh, vh, lengths, causal=True, q_round=q).reshape(B, T, D)
        attn_out = run(f"blocks.{L}.hook_attn_out", q(z @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]))
        x = run(f"blocks.{L}.hook_resid_mid", q(x + attn_out))
        h2 = q(layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps))
        pre = q(h2 @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        post = run(f"blocks.{L}.mlp.hook_post", q(gelu_tanh(pre)))
        mlp_out = run(f"blocks.{L}.hook_mlp_out", q(post @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]))
        x = run(f"blocks.{L}.hook_resid_post", q(x + mlp_out))
    normalized = run("ln_final.hook_normalized", q(layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], eps)))
    logits = q(normalized @ W["wte.weight"].T)
    loss, token_losses = lm_loss(logits, ids, lengths)
    return {**run.acts, "logits": logits, "loss": loss, "token_losses": token_losses, "ids": ids, "lengths": lengths}


# --------------------------------------------------------------------------------------------------------
# Llama family (Llama, Llama 3 rope scaling, Qwen2)
# --------------------------------------------------------------------------------------------------------


def load_llama(model_dir) -> tuple[dict, dict]:
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = _weights64(model_dir / "model.safetensors")
    return config, weights


def llama_head_dim(config: dict) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def rope_inv_freq(config: dict) -> np.ndarray:
    """inv_freq[i] = θ^(−2i/head_dim), with HF's llama3 adjustment when rope_scaling says so: wavelengths
    shorter than original/high_freq_factor kept, longer than original/low_freq_factor divided by factor, and
    a linear blend (in original/wavelength) between."""
    hd = llama_head_dim(config)
    theta = float(config.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = config.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv
    if kind != "llama3":
        raise NotImplementedError(f"rope_scaling {kind}")
    factor = float(rs["factor"])
    low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old = float(rs["original_max_position_embeddings"])
    wavelen = 2.0 * math.pi / inv
    out = np.empty_like(inv)
    for i, (f, w) in enumerate(zip(inv, wavelen)):
        if w < old / high:
            out[i] = f
        elif w > old / low:
            out[i] = f / factor
        else:
            smooth = (old / w - low) / (high - low)
            out[i] = (1.0 - smooth) * f / factor + smooth * f
    return out


def apply_rope(x, cos, sin):
    """HF's non-interleaved convention: x·cos + rotate_half(x)·sin, rotate_half([a, b]) = [−b, a]."""
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


def llama_forward(config: dict, weights: dict, seqs, scale=None, precision="f64") -> dict:
    q = _rounder(precision)
    W = {k: q(v) for k, v in weights.items()}
    D = config["hidden_size"]
    H = config["num_attention_heads"]
    KV = config.get("num_key_value_heads") or H
    hd = llama_head_dim(config)
    n_layers = config["num_hidden_layers"]
    eps = config.get("rms_norm_eps", 1e-6)
    if config.get("hidden_act", "silu") != "silu":
        raise NotImplementedError(config["hidden_act"])
    ids, lengths = pad_batch(seqs)
    B, T = ids.shape
    if T > config["max_position_embeddings"]:
        raise ValueError(f"sequence of {T} tokens is longer than {config['max_position_embeddings']}")
    run = _Hooks(hook_names(LLAMA_FAMILY, n_layers), scale)

    freqs = np.arange(T, dtype=np.float64)[:, None] * rope_inv_freq(config)[None, :]
    angles = np.concatenate([freqs, freqs], axis=-1)  # [T, hd]
    cos, sin = np.cos(angles), np.sin(angles)
    head_of_kv = np.arange(H) // (H // KV)  # GQA: query head h reads kv head h // (H/KV)

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        return q(y)

    x = run("hook_embed", W["model.embed_tokens.weight"][ids])
    for L in range(n_layers):
        p = f"model.layers.{L}."
        x = run(f"blocks.{L}.hook_resid_pre", x)
        h = q(rms_norm(x, W[p + "input_layernorm.weight"], eps))
        qh = linear(h, p + "self_attn.q_proj").reshape(B, T, H, hd)
        kh = linear(h, p + "self_attn.k_proj").reshape(B, T, KV, hd)
        vh = linear(h, p + "self_attn.v_proj").reshape(B, T, KV, hd)
        qh, kh = q(apply_rope(qh, cos, sin)), q(apply_rope(kh, cos, sin))
        z = attention(qh, kh[:, :, head_of_kv], vh[:, :, head_of_kv], lengths, causal=True, q_round=q)
        attn_out = run(f"blocks.{L}.hook_attn_out", linear(z.reshape(B, T, H * hd), p + "self_attn.o_proj"))
        x = run(f"blocks.{L}.hook_resid_mid", q(x + attn_out))
        h2 = q(rms_norm(x, W[p + "post_attention_layernorm.weight"], eps))
        post = run(
            f"blocks.{L}.mlp.hook_post", q(q(silu(linear(h2, p + "mlp.gate_proj"))) * linear(h2, p + "mlp.up_proj"))
        )
        mlp_out = run(f"blocks.{L}.hook_mlp_out", linear(post, p + "mlp.down_proj"))
        x = run(f"blocks.{L}.hook_resid_post", q(x + mlp_out))
    normalized = run("ln_final.hook_normalized", q(rms_norm(x, W["model.norm.weight"], eps)))
    head = W.get("lm_head.weight")
    if head is None or config.get("tie_word_embeddings", False):
        head = W["model.embed_tokens.weight"]
    logits = q(normalized @ head.T)
    loss, token_losses = lm_loss(logits, ids, lengths)
    return {**run.acts, "logits": logits, "loss": loss, "token_losses": token_losses, "ids": ids, "lengths": lengths}


# --------------------------------------------------------------------------------------------------------
# BERT (MiniLM) + sentence-transformers mean pooling and Normalize
# --------------------------------------------------------------------------------------------------------


def load_bert(model_dir) -> tuple[dict, dict]:
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = {}
    for name, arr in _weights64(model_dir / "model.safetensors").items():
        if name.startswith("bert."):
            name = name[len("bert.") :]
        if name == "embeddings.position_ids" or arr.dtype.kind != "f":
            continue
        weights[name] = arr
    return config, weights


def bert_forward(config: dict, weights: dict, seqs, scale=None, precision="f64") -> dict:
    q = _rounder(precision)
    W = {k: q(v) for k, v in weights.items()}
    D, H, n_layers = config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]
    eps = config.get("layer_norm_eps", 1e-12)
    if config.get("hidden_act", "gelu") != "gelu":
        raise NotImplementedError(config["hidden_act"])
    hd = D // H
    ids, lengths = pad_batch(seqs)
    B, T = ids.shape
    if T > config["max_position_embeddings"]:
        raise ValueError(f"sequence of {T} tokens is longer than {config['max_position_embeddings']}")
    run = _Hooks(hook_names(BERT_FAMILY, n_layers), scale)

    def linear(x, name):
        return q(x @ W[name + ".weight"].T + W[name + ".bias"])

    def ln(x, name):
        return q(layer_norm(x, W[name + ".weight"], W[name + ".bias"], eps))

    embed = run("hook_embed", W["embeddings.word_embeddings.weight"][ids])
    pos = run("hook_pos_embed", np.broadcast_to(W["embeddings.position_embeddings.weight"][:T], (B, T, D)).copy())
    token_type = W["embeddings.token_type_embeddings.weight"][0]
    x = ln(q(embed + pos + token_type), "embeddings.LayerNorm")
    for L in range(n_layers):
        p = f"encoder.layer.{L}."
        x = run(f"blocks.{L}.hook_resid_pre", x)
        qh = linear(x, p + "attention.self.query").reshape(B, T, H, hd)
        kh = linear(x, p + "attention.self.key").reshape(B, T, H, hd)
        vh = linear(x, p + "attention.self.value").reshape(B, T, H, hd)
        z = attention(qh, kh, vh, lengths, causal=False, q_round=q).reshape(B, T, D)
        attn_out = run(f"blocks.{L}.hook_attn_out", linear(z, p + "attention.output.dense"))
        x = run(f"blocks.{L}.hook_resid_mid", ln(q(attn_out + x), p + "attention.output.LayerNorm"))
        post = run(f"blocks.{L}.mlp.hook_post", q(gelu_erf(linear(x, p + "intermediate.dense"))))
        mlp_out = run(f"blocks.{L}.hook_mlp_out", linear(post, p + "output.dense"))
        x = run(f"blocks.{L}.hook_resid_post", ln(q(mlp_out + x), p + "output.LayerNorm"))
    mask = valid_mask(lengths, T)[..., None].astype(np.float64)
    pooled = (x * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    embedding = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return {**run.acts, "embedding": embedding, "ids": ids, "lengths": lengths}


FORWARD = {GPT2_FAMILY: gpt2_forward, LLAMA_FAMILY: llama_forward, BERT_FAMILY: bert_forward}
LOAD = {GPT2_FAMILY: load_gpt2, LLAMA_FAMILY: load_llama, BERT_FAMILY: load_bert}


def family_of(config: dict) -> str:
    kind = config.get("model_type")
    if kind == "gpt2":
        return GPT2_FAMILY
    if kind in ("llama", "qwen2"):
        return LLAMA_FAMILY
    if kind == "bert":
        return BERT_FAMILY
    raise ValueError(f"unknown model_type {kind!r}")


def reference_run(model_dir, seqs, scale=None, precision="f64") -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    family = family_of(config)
    config, weights = LOAD[family](model_dir)
    return FORWARD[family](config, weights, seqs, scale=scale, precision=precision)


def n_layers_of(config: dict) -> int:
    return config.get("n_layer") or config["num_hidden_layers"]


def parameter_count(model_dir) -> int:
    """Elements of every floating-point tensor stored in model.safetensors, buffers excluded (GPT-2's
    `attn.bias`/`attn.masked_bias` masks, BERT's integer `position_ids`); a tied head is stored once and counted
    once. This is HF's `num_parameters()` for the model the file was saved from."""
    tensors, dtypes, _ = read_safetensors_raw(Path(model_dir) / "model.safetensors")
    total = 0
    for name, arr in tensors.items():
        if dtypes[name] not in ("F64", "F32", "F16", "BF16"):
            continue
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        total += arr.size
    return total


# --------------------------------------------------------------------------------------------------------
# tokenizers for the tiny models (python `tokenizers`, imported lazily)
# --------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
GPT2_DATA = ROOT / "crate" / "data" / "gpt2"


def gpt2_tokenizer(hub_fields: bool = False):
    """The GPT-2 tokenizer in the Hub's tokenizer.json style: ByteLevel pre-tokenizer without prefix space,
    ByteLevel decoder, ByteLevel post-processor (add_prefix_space=True, trim_offsets=False), special
    <|endoftext|> = 50256. Returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = json.loads((GPT2_DATA / "vocab.json").read_text())
    merges = [tuple(line.split(" ")) for line in (GPT2_DATA / "merges.txt").read_text().splitlines()[1:] if line]
    kwargs = {"continuing_subword_prefix": "", "end_of_word_suffix": ""} if hub_fields else {}
    tok = Tokenizer(models.BPE(vocab, merges, **kwargs))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def gpt2_tokenizer_json(hub_fields: bool = False) -> dict:
    spec = json.loads(gpt2_tokenizer(hub_fields).to_str())
    if hub_fields:  # the Hub's file spells these out; python writes them only when set
        spec["model"]["continuing_subword_prefix"] = ""
        spec["model"]["end_of_word_suffix"] = ""
        spec["model"]["dropout"] = None
        spec["model"]["unk_token"] = None
        spec["model"]["fuse_unk"] = False
        spec["model"]["byte_fallback"] = False
    return spec


_LLAMA_CORPUS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
    "want of a wife.",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "The quick brown fox jumps over the lazy dog. A sparse autoencoder reads the residual stream.",
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition.",
    "Sparse features: attention heads, MLP neurons, layers and tokens; 0123456789.",
]

LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"]


def tiny_llama_tokenizer(vocab_size: int = 300):
    """A byte-level BPE trained on a few embedded sentences, with <unk>=0, <s>=1, </s>=2 and a post-processor
    that prepends <s> (Llama 3 style TemplateProcessing)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_LLAMA_CORPUS, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tok


_BERT_WORDS = (
    "the a an of and to in is it that was for on with as by at he she they we you this be are from or his her "
    "not but had have which one all were their there been if more when will would who so no what up out said "
    "fox dog quick brown lazy jumps over weather lovely today sunny outside drove stadium sparse feature model"
).split()


def tiny_bert_tokenizer():
    """A WordPiece tokenizer in BERT's layout ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, lowercase
    BertNormalizer, BertPreTokenizer, [CLS] $A [SEP]) with a few hundred entries."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    pieces = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()") + _BERT_WORDS
    pieces += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["##s", "##ed", "##ing", "##ly", "##er"]
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok


# --------------------------------------------------------------------------------------------------------
# tiny model builders
# --------------------------------------------------------------------------------------------------------


def _normal(rng, shape, std):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _norm_weight(rng, n):
    return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)


def make_tiny_gpt2(
    out_dir, seed: int = 0, prefix: str = "", with_mask_buffers: bool = False, n_inner=None, eps: float = 1e-5
) -> Path:
    """A 2-layer GPT-2 (d 32, 4 heads, 32 positions) on the real GPT-2 vocabulary, in HF layout."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    D, H, n_layers, n_pos, vocab = 32, 4, 2, 32, 50257
    d_mlp = n_inner or 4 * D
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_embd": D,
        "n_head": H,
        "n_layer": n_layers,
        "n_positions": n_pos,
        "n_ctx": n_pos,
        "n_inner": n_inner,
        "vocab_size": vocab,
        "layer_norm_epsilon": eps,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "torch_dtype": "float32",
    }
    t = {}
    t["wte.weight"] = _normal(rng, (vocab, D), 0.1)
    t["wpe.weight"] = _normal(rng, (n_pos, D), 0.05)
    for L in range(n_layers):
        p = f"h.{L}."
        t[p + "ln_1.weight"] = _norm_weight(rng, D)
        t[p + "ln_1.bias"] = _normal(rng, D, 0.05)
        t[p + "attn.c_attn.weight"] = _normal(rng, (D, 3 * D), 0.2)
        t[p + "attn.c_attn.bias"] = _normal(rng, 3 * D, 0.05)
        t[p + "attn.c_proj.weight"] = _normal(rng, (D, D), 0.15)
        t[p + "attn.c_proj.bias"] = _normal(rng, D, 0.05)
        if with_mask_buffers:
            t[p + "attn.bias"] = np.tril(np.ones((n_pos, n_pos), dtype=np.float32))[None, None]
            t[p + "attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
        t[p + "ln_2.weight"] = _norm_weight(rng, D)
        t[p + "ln_2.bias"] = _normal(rng, D, 0.05)
        t[p + "mlp.c_fc.weight"] = _normal(rng, (D, d_mlp), 0.2)
        t[p + "mlp.c_fc.bias"] = _normal(rng, d_mlp, 0.05)
        t[p + "mlp.c_proj.weight"] = _normal(rng, (d_mlp, D), 0.1)
        t[p + "mlp.c_proj.bias"] = _normal(rng, D, 0.05)
    t["ln_f.weight"] = _norm_weight(rng, D)
    t["ln_f.bias"] = _normal(rng, D, 0.05)
    # GPT2Model's names are `wte.weight` etc.; with the LM head model's prefix they are `transformer.wte.weight`.
    write_safetensors(out / "model.safetensors", {prefix + k: v for k, v in t.items()}, {"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer.json").write_text(json.dumps(gpt2_tokenizer_json(hub_fields=True)))
    return out


LLAMA_VARIANTS = ("llama", "tied", "qwen2", "llama3_rope", "bf16", "head_dim", "attention_bias")


def make_tiny_llama(out_dir, seed: int = 0, variant: str = "llama") -> Path:
    """A 2-layer Llama-family model in HF layout.

    llama: hidden 64, 4 heads, 2 kv heads (GQA), untied lm_head; tied: tie_word_embeddings, no lm_head.weight;
    qwen2: model_type qwen2 with q/k/v biases; llama3_rope: rope_scaling llama3 (factor 8, low 1, high 4,
    original 64, so the 8 frequencies fall in all three bands); bf16: BF16 weights; head_dim: explicit
    head_dim 24 (≠ hidden/heads = 16); attention_bias: llama with "attention_bias": true (biases on q/k/v and on o_proj, as transformers builds it)."""
    if variant not in LLAMA_VARIANTS:
        raise ValueError(variant)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = tiny_llama_tokenizer()
    D, H, KV, n_layers, d_mlp, vocab = 64, 4, 2, 2, 96, 320
    assert tok.get_vocab_size() <= vocab
    hd = 24 if variant == "head_dim" else D // H
    config = {
        "architectures": ["Qwen2ForCausalLM" if variant == "qwen2" else "LlamaForCausalLM"],
        "model_type": "qwen2" if variant == "qwen2" else "llama",
        "hidden_act": "silu",
        "hidden_size": D,
        "intermediate_size": d_mlp,
        "num_hidden_layers": n_layers,
        "num_attention_heads": H,
        "num_key_value_heads": KV,
        "rms_norm_eps": 1e-5 if variant != "qwen2" else 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 64,
        "vocab_size": vocab,
        "tie_word_embeddings": variant == "tied",
        "bos_token_id": tok.token_to_id("<s>"),
        "eos_token_id": tok.token_to_id("</s>"),
        "torch_dtype": "bfloat16" if variant == "bf16" else "float32",
    }
    if variant == "head_dim":
        config["head_dim"] = hd
    if variant == "attention_bias":
        config["attention_bias"] = True
    if variant == "qwen2":
        config["use_sliding_window"] = False
        config["sliding_window"] = 64
        config["max_window_layers"] = n_layers
    if variant == "llama3_rope":
        config["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        }
        config["max_position_embeddings"] = 512
    bias = variant in ("qwen2", "attention_bias")
    t = {"model.embed_tokens.weight": _normal(rng, (vocab, D), 0.1)}
    for L in range(n_layers):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = _norm_weight(rng, D)
        for name, rows in (("q_proj", H * hd), ("k_proj", KV * hd), ("v_proj", KV * hd)):
            t[p + f"self_attn.{name}.weight"] = _normal(rng, (rows, D), 0.15)
            if bias:
                t[p + f"self_attn.{name}.bias"] = _normal(rng, rows, 0.1)
        t[p + "self_attn.o_proj.weight"] = _normal(rng, (D, H * hd), 0.15)
        if variant == "attention_bias":  # transformers' Llama: o_proj = Linear(..., bias=attention_bias)
            t[p + "self_attn.o_proj.bias"] = _normal(rng, D, 0.1)
        t[p + "post_attention_layernorm.weight"] = _norm_weight(rng, D)
        t[p + "mlp.gate_proj.weight"] = _normal(rng, (d_mlp, D), 0.15)
        t[p + "mlp.up_proj.weight"] = _normal(rng, (d_mlp, D), 0.15)
        t[p + "mlp.down_proj.weight"] = _normal(rng, (D, d_mlp), 0.1)
    t["model.norm.weight"] = _norm_weight(rng, D)
    if variant != "tied":
        t["lm_head.weight"] = _normal(rng, (vocab, D), 0.1)
    if variant == "bf16":
        t = {k: BF16.from_float(v) for k, v in t.items()}
    write_safetensors(out / "model.safetensors", t, {"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer.json").write_text(tok.to_str())
    return out


def make_tiny_bert(out_dir, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32, 4 heads, intermediate 64, 64 positions) in BertModel layout, with a small
    WordPiece tokenizer and an `embeddings.position_ids` buffer like real checkpoints."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = tiny_bert_tokenizer()
    D, H, n_layers, d_mlp, n_pos = 32, 4, 2, 64, 64
    vocab = tok.get_vocab_size()
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": D,
        "intermediate_size": d_mlp,
        "num_hidden_layers": n_layers,
        "num_attention_heads": H,
        "max_position_embeddings": n_pos,
        "type_vocab_size": 2,
        "vocab_size": vocab,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }
    t = {
        "embeddings.position_ids": np.arange(n_pos, dtype=np.int64)[None],
        "embeddings.word_embeddings.weight": _normal(rng, (vocab, D), 0.1),
        "embeddings.position_embeddings.weight": _normal(rng, (n_pos, D), 0.05),
        "embeddings.token_type_embeddings.weight": _normal(rng, (2, D), 0.05),
        "embeddings.LayerNorm.weight": _norm_weight(rng, D),
        "embeddings.LayerNorm.bias": _normal(rng, D, 0.05),
    }
    for L in range(n_layers):
        p = f"encoder.layer.{L}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = _normal(rng, (D, D), 0.2)
            t[p + f"attention.self.{name}.bias"] = _normal(rng, D, 0.05)
        t[p + "attention.output.dense.weight"] = _normal(rng, (D, D), 0.15)
        t[p + "attention.output.dense.bias"] = _normal(rng, D, 0.05)
        t[p + "attention.output.LayerNorm.weight"] = _norm_weight(rng, D)
        t[p + "attention.output.LayerNorm.bias"] = _normal(rng, D, 0.05)
        t[p + "intermediate.dense.weight"] = _normal(rng, (d_mlp, D), 0.2)
        t[p + "intermediate.dense.bias"] = _normal(rng, d_mlp, 0.05)
        t[p + "output.dense.weight"] = _normal(rng, (D, d_mlp), 0.15)
        t[p + "output.dense.bias"] = _normal(rng, D, 0.05)
        t[p + "output.LayerNorm.weight"] = _norm_weight(rng, D)
        t[p + "output.LayerNorm.bias"] = _normal(rng, D, 0.05)
    write_safetensors(out / "model.safetensors", t, {"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer.json").write_text(tok.to_str())
    (out / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": D, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )
    return out
