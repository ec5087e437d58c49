"""SAEs in SAELens' layout, checked with the Python ecosystem: what `saekit sae init` writes is read by the
`safetensors` package (exactly W_enc, b_enc, W_dec, b_dec, f32, the shapes SAELens loads strictly) with a
cfg.json SAELens 6 takes as current (`metadata.sae_lens_version`), initialised as SAELens 6 does; numpy's
encode/decode (standard and TopK, from SAELens' formulas) equals `saekit sae encode`; and an SAE written by
Python, the way SAELens saves one, loads in saekit, while a folder SAELens would refuse is refused."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file


def write_npy(path, x):
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))


def np_encode(w, cfg, x):
    """SAELens' forward: x − b_dec (when applied), then ReLU, or top-k of the pre-activations then ReLU."""
    x = x.astype(np.float64)
    if cfg.get("apply_b_dec_to_input", True):
        x = x - w["b_dec"]
    pre = x @ w["W_enc"].astype(np.float64) + w["b_enc"]
    if cfg["architecture"] == "standard":
        return np.maximum(pre, 0.0)
    k = cfg["k"]
    out = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    rows = np.arange(pre.shape[0])[:, None]
    out[rows, top] = np.maximum(pre[rows, top], 0.0)
    return out


def np_decode(w, z):
    return z @ w["W_dec"].astype(np.float64) + w["b_dec"]


@pytest.mark.parametrize("arch,k", [("standard", None), ("topk", 4)])
def test_a_new_sae_is_in_saelens_layout_and_initialised_as_saelens_does(saekit, tmp_path, arch, k):
    out = tmp_path / "sae"

    def init(seed, where):
        args = ["sae", "init", "--d-in", 16, "--d-sae", 64, "--architecture", arch, "--seed", seed, "--out", where,
                "--model-name", "gpt2", "--hook-name", "blocks.3.hook_resid_post"]
        return saekit(*args, *(["--k", k] if k else []))

    r = init(3, out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["d_in"] == 16 and cfg["d_sae"] == 64 and cfg["architecture"] == arch
    assert cfg["dtype"] == "float32" and cfg["device"] == "cpu"
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"] >= "6.0.0"
    assert cfg["metadata"]["hook_name"] == "blocks.3.hook_resid_post" and cfg["metadata"]["model_name"] == "gpt2"
    assert cfg.get("k") == k
    w = load_file(out / "sae_weights.safetensors")
    assert sorted(w) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    assert {n: (t.shape, t.dtype) for n, t in w.items()} == {
        "W_enc": ((16, 64), np.float32), "b_enc": ((64,), np.float32),
        "W_dec": ((64, 16), np.float32), "b_dec": ((16,), np.float32),
    }
    assert np.allclose(np.linalg.norm(w["W_dec"], axis=1), 0.1, atol=1e-6)
    assert np.array_equal(w["W_enc"], w["W_dec"].T)
    assert not w["b_enc"].any() and not w["b_dec"].any()
    # A different seed, a different dictionary; the same seed, the same one.
    assert init(3, tmp_path / "again").returncode == 0
    assert np.array_equal(load_file(tmp_path / "again" / "sae_weights.safetensors")["W_dec"], w["W_dec"])
    assert init(4, tmp_path / "other").returncode == 0
    assert not np.array_equal(load_file(tmp_path / "other" / "sae_weights.safetensors")["W_dec"], w["W_dec"])


@pytest.mark.parametrize("arch,k", [("standard", None), ("topk", 5)])
def test_an_sae_saved_by_python_encodes_in_saekit_as_numpy_does(saekit, tmp_path, arch, k):
    rng = np.random.default_rng(7)
    d_in, d_sae = 12, 40
    w = {
        "W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
        "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.3,
        "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32) * 0.2,
        "b_dec": rng.normal(size=d_in).astype(np.float32) * 0.5,
    }
    cfg = {"d_in": d_in, "d_sae": d_sae, "architecture": arch, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"sae_lens_version": "6.18.0", "hook_name": "blocks.0.hook_resid_pre", "context_size": 128}}
    if k:
        cfg["k"] = k
    sae = tmp_path / "sae"
    sae.mkdir()
    (sae / "cfg.json").write_text(json.dumps(cfg))
    save_file(w, str(sae / "sae_weights.safetensors"))
    x = rng.normal(size=(30, d_in)).astype(np.float32)
    write_npy(tmp_path / "x.npy", x)
    r = saekit("sae", "encode", sae, "--input", tmp_path / "x.npy", "--latents", tmp_path / "z.npy",
               "--reconstruction", tmp_path / "xhat.npy")
    assert r.returncode == 0, r.stderr
    z, x_hat = np.load(tmp_path / "z.npy"), np.load(tmp_path / "xhat.npy")
    want = np_encode(w, cfg, x)
    assert z.shape == (30, d_sae) and x_hat.shape == (30, d_in)
    assert np.abs(z - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert np.abs(x_hat - np_decode(w, want)).max() <= 1e-4 * max(1.0, np.abs(x_hat).max())
    if k:
        assert ((z > 0).sum(axis=1) <= k).all() and ((z > 0).sum(axis=1) > 0).all()
    r = saekit("sae", "show", sae)
    assert r.returncode == 0 and "blocks.0.hook_resid_pre" in r.stdout and "6.18.0" in r.stdout, r.stdout


def test_folders_saelens_would_refuse_are_refused_with_the_reason(saekit, tmp_path):
    base = tmp_path / "base"
    assert saekit("sae", "init", "--d-in", 8, "--d-sae", 16, "--out", base).returncode == 0
    w = load_file(base / "sae_weights.safetensors")
    cfg = json.loads((base / "cfg.json").read_text())
    cases = {
        "extra": ({**w, "scaling_factor": np.ones(16, np.float32)}, cfg, "unexpected tensors scaling_factor"),
        "shape": ({**w, "W_enc": np.zeros((16, 8), np.float32)}, cfg, "`W_enc` is [16, 8], expected [8, 16]"),
        "missing": ({n: t for n, t in w.items() if n != "b_enc"}, cfg, "no tensor `b_enc`"),
        "arch": (w, {**cfg, "architecture": "gated"}, "architecture `gated` is not supported yet"),
        "norm": (w, {**cfg, "normalize_activations": "layer_norm"}, "normalize_activations `layer_norm`"),
    }
    for name, (weights, c, message) in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "cfg.json").write_text(json.dumps(c))
        save_file(weights, str(d / "sae_weights.safetensors"))
        r = saekit("sae", "show", d)
        assert r.returncode != 0 and message in r.stderr, (name, r.stderr)
