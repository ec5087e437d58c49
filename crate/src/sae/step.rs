//! The training step on the CPU, by hand: the forward pass, the gradients and Adam over flat `f32` buffers,
//! with every large product a call to the `gemm` crate (the kernels candle itself uses) on a thread pool the
//! trainer owns.
//!
//! Two paths:
//! - **dense** (`standard`): the five products of a step (encoder, decoder, the decoder's input gradient and
//!   both weight gradients), run over the batch in row blocks of [`ROW_BLOCK`] tokens, so the only
//!   `[tokens, d_sae]` buffers are two blocks of it. The b_dec-on-input term of b_dec's gradient is a
//!   matrix-vector product (Σ_tokens d_pre·W_encᵀ = W_enc·Σ_tokens d_pre), not a sixth product.
//! - **sparse** (`topk`): the encoder is the one dense product (in row blocks); each token's top k latents
//!   are picked from its block as it is made (a k-element heap, ties to the lower index), and the decoder,
//!   its input gradient and both weight gradients touch only those k latents per token (k/d_sae of the dense
//!   work). AuxK touches only the dead latents: their top `k_aux` pre-activations per token are picked from
//!   the same block.
//!
//! The weight gradients of the sparse path are scattered by latent: each thread owns a range of latents and
//! adds, in token order, what every token gives them, so the result does not depend on the thread count.
//! The encoder is kept transposed (`[d_sae, d_in]`, one latent per row) so that every per-latent access is
//! contiguous; it is turned back into SAELens' `[d_in, d_sae]` only when an [`Sae`] is made.
//!
//! Peak memory of a step beyond the parameters, their gradients and Adam's two moments (4 × (2·d_in·d_sae +
//! d_sae + d_in) floats): dense, 2 × ROW_BLOCK × d_sae + 3 × tokens × d_in floats (the batch, x − b_dec,
//! d(MSE)/dx̂); sparse, ROW_BLOCK × d_sae + 4 × tokens × d_in (the same and AuxK's residual gradient) +
//! 3 × tokens × (k + k_aux) floats (each pick's latent, value and gradient).

use candle_core::{Device, Tensor};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::{Architecture, Sae};
use crate::error::Result;

/// Tokens per block of the encoder's output: big enough that the products run at the GEMM's full speed,
/// small enough that no `[batch, d_sae]` buffer is kept (at d_sae 16384, 64 MB per block).
pub const ROW_BLOCK: usize = 1024;

/// Rows per partial sum of a block's per-latent sums: fixed, so that every sum is added in the same order
/// whatever the thread count (and from run to run).
const SUM_ROWS: usize = 64;

/// The sum of a parallel iterator's items in their order (rayon's `sum` adds in whatever order its
/// splitting took, which changes the last bits from run to run).
fn ordered_sum(items: impl IndexedParallelIterator<Item = f64>) -> f64 {
    items.collect::<Vec<f64>>().iter().sum()
}

/// One SAE's parameters (or their gradients, or one of Adam's moments) as flat buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat {
    pub d_in: usize,
    pub d_sae: usize,
    /// W_enc transposed: `[d_sae, d_in]`, latent j's encoder direction in row j.
    pub enc: Vec<f32>,
    /// `[d_sae]`
    pub b_enc: Vec<f32>,
    /// `[d_sae, d_in]`
    pub dec: Vec<f32>,
    /// `[d_in]`
    pub b_dec: Vec<f32>,
}

impl Flat {
    pub fn zeros(d_in: usize, d_sae: usize) -> Flat {
        Flat {
            d_in,
            d_sae,
            enc: vec![0.0; d_in * d_sae],
            b_enc: vec![0.0; d_sae],
            dec: vec![0.0; d_in * d_sae],
            b_dec: vec![0.0; d_in],
        }
    }

    /// The SAE's weights (copied to the host as f32; the encoder transposed).
    pub fn from_sae(sae: &Sae) -> Result<Flat> {
        Flat::from_tensors(&[&sae.w_enc, &sae.b_enc, &sae.w_dec, &sae.b_dec], sae.config.d_in, sae.config.d_sae)
    }

    /// `[W_enc, b_enc, W_dec, b_dec]` as tensors in SAELens' shapes.
    pub fn tensors(&self) -> Result<[Tensor; 4]> {
        let (d, s) = (self.d_in, self.d_sae);
        let cpu = &Device::Cpu;
        Ok([
            Tensor::from_vec(transpose(&self.enc, s, d), (d, s), cpu)?,
            Tensor::from_vec(self.b_enc.clone(), s, cpu)?,
            Tensor::from_vec(self.dec.clone(), (s, d), cpu)?,
            Tensor::from_vec(self.b_dec.clone(), d, cpu)?,
        ])
    }

    /// From `[W_enc, b_enc, W_dec, b_dec]` in SAELens' shapes.
    pub fn from_tensors<T: std::borrow::Borrow<Tensor>>(t: &[T], d_in: usize, d_sae: usize) -> Result<Flat> {
        let v = |t: &T| -> Result<Vec<f32>> {
            let t = t.borrow().to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        Ok(Flat {
            d_in,
            d_sae,
            enc: transpose(&v(&t[0])?, d_in, d_sae),
            b_enc: v(&t[1])?,
            dec: v(&t[2])?,
            b_dec: v(&t[3])?,
        })
    }

    fn parts(&self) -> [&[f32]; 4] {
        [&self.enc, &self.b_enc, &self.dec, &self.b_dec]
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 4] {
        [&mut self.enc, &mut self.b_enc, &mut self.dec, &mut self.b_dec]
    }

    fn fill(&mut self, v: f32) {
        for p in self.parts_mut() {
            p.par_iter_mut().for_each(|x| *x = v);
        }
    }

    /// The global L2 norm over all four parts.
    pub fn norm(&self) -> f64 {
        self.parts()
            .iter()
            .map(|p| {
                ordered_sum(p.par_chunks(1 << 14).map(|c| c.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>()))
            })
            .sum::<f64>()
            .sqrt()
    }
}

/// Laps of a stopwatch.
struct Clock(std::time::Instant);

impl Clock {
    fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    /// Seconds since the last lap.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let s = (now - self.0).as_secs_f64();
        self.0 = now;
        s
    }
}

/// `[rows, cols]` row-major to `[cols, rows]`, in cache-sized tiles.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 32;
    let mut out = vec![0f32; a.len()];
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    out
}

/// What runs the products: the `gemm` crate on `threads` threads of the current rayon pool, or a system
/// BLAS when one is given.
#[derive(Debug, Clone, Copy)]
pub struct Kernels<'a> {
    pub threads: usize,
    pub blas: Option<&'a super::blas::Blas>,
}

/// What a step needs besides the weights and the batch.
#[derive(Debug, Clone, Copy)]
pub struct StepSetup<'a> {
    pub architecture: Architecture,
    pub apply_b_dec_to_input: bool,
    /// `standard`: the L1 coefficient at this step.
    pub l1: f64,
    /// `topk`: which latents are dead (AuxK's candidates), how many AuxK picks per token (0: off) and its
    /// coefficient.
    pub dead: &'a [bool],
    pub k_aux: usize,
    pub aux_coefficient: f64,
}

/// What the forward pass measured on the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub mse: f64,
    pub sparsity_loss: f64,
    pub l0: f64,
    pub explained_variance: f64,
    /// Per latent: the tokens it fired on.
    pub fired: Vec<u32>,
    /// Seconds spent in each part of the step (for benchmarks).
    pub phases: Vec<(&'static str, f64)>,
}

/// Buffers reused from step to step.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    xc: Vec<f32>,
    block: Vec<f32>,
    block2: Vec<f32>,
    dx_hat: Vec<f32>,
    d_aux: Vec<f32>,
    picks: Vec<Pick>,
    aux_picks: Vec<Pick>,
}

/// One latent chosen for one token: its index, its value (ReLU'd for top-k, raw for AuxK) and the
/// gradient into its pre-activation.
#[derive(Debug, Clone, Copy, Default)]
struct Pick {
    latent: u32,
    value: f32,
    grad: f32,
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`, each operand given by its row and column
/// strides (elements).
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    kernels: Kernels,
) {
    assert!(dst.len() >= (m - 1) * dst_rs + n, "matmul: destination too small");
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs, "matmul: left operand too small");
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs, "matmul: right operand too small");
    if let Some(blas) = kernels.blas {
        return blas.sgemm((m, n, k), dst, dst_rs, accumulate, lhs, (lhs_rs, lhs_cs), rhs, (rhs_rs, rhs_cs));
    }
    let threads = kernels.threads;
    // SAFETY: the asserts above keep every access inside the slices; dst does not alias lhs or rhs (it is
    // borrowed mutably while they are borrowed shared).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None },
        )
    }
}

/// The loss's measurements on `x` (`[n, d_in]`, row-major) and its gradients into `grads`; nothing else
/// changes. Must run inside the trainer's thread pool (`kernels.threads` is its size).
pub fn gradients(
    p: &Flat,
    x: &[f32],
    setup: &StepSetup,
    grads: &mut Flat,
    ws: &mut Workspace,
    kernels: Kernels,
) -> Measured {
    let d = p.d_in;
    let n = x.len() / d;
    let inv_n = 1.0 / n as f64;
    let mut clock = Clock::start();
    grads.fill(0.0);

    // x − b_dec, and the batch's total variance (for explained variance).
    let xc = grow(&mut ws.xc, n * d);
    xc.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(c, x)| {
        for a in 0..d {
            c[a] = if setup.apply_b_dec_to_input { x[a] - p.b_dec[a] } else { x[a] };
        }
    });
    let mut mean = vec![0f64; d];
    for row in x.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m *= inv_n);
    let total_var = ordered_sum(
        x.par_chunks(d).map(|row| row.iter().zip(&mean).map(|(&v, &m)| (v as f64 - m).powi(2)).sum::<f64>()),
    );

    let t_input = clock.lap();
    let mut out = match setup.architecture {
        Architecture::Standard => dense(p, x, setup, grads, ws, kernels, n),
        Architecture::TopK { k } => sparse(p, x, setup, grads, ws, kernels, n, k),
    };
    out.phases.insert(0, ("input and zeroed gradients", t_input));
    clock = Clock::start();
    // b_dec's gradient: Σ_tokens d(MSE)/dx̂ (already in grads.b_dec), minus W_enc·Σ_tokens d_pre when b_dec
    // is subtracted from the input.
    if setup.apply_b_dec_to_input {
        let db_enc = &grads.b_enc;
        let mut sub = vec![0f32; d];
        for (j, row) in p.enc.chunks(d).enumerate() {
            let g = db_enc[j];
            if g != 0.0 {
                for (o, &w) in sub.iter_mut().zip(row) {
                    *o += g * w;
                }
            }
        }
        for (b, s) in grads.b_dec.iter_mut().zip(sub) {
            *b -= s;
        }
        out.phases.push(("b_dec through the input", clock.lap()));
    }
    out.explained_variance = if total_var > 0.0 { 1.0 - out.mse * n as f64 / total_var } else { 0.0 };
    out
}

#[allow(clippy::too_many_arguments)]
fn dense(
    p: &Flat,
    x: &[f32],
    setup: &StepSetup,
    grads: &mut Flat,
    ws: &mut Workspace,
    kernels: Kernels,
    n: usize,
) -> Measured {
    let (d, s) = (p.d_in, p.d_sae);
    let inv_n = 1.0 / n as f64;
    let l1 = setup.l1;
    let norms: Vec<f32> = p.dec.par_chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
    let l1_grad: Vec<f32> = norms.iter().map(|&nm| (l1 * inv_n) as f32 * nm).collect();
    let mut fired = vec![0u32; s];
    let mut z_sum = vec![0f64; s];
    let (mut sq_err, mut l1_sum, mut active) = (0f64, 0f64, 0u64);
    let xc = &ws.xc[..n * d];
    let dx_hat = grow(&mut ws.dx_hat, n * d);
    let mut clock = Clock::start();
    let mut t = [0f64; 6];
    for r0 in (0..n).step_by(ROW_BLOCK) {
        let c = ROW_BLOCK.min(n - r0);
        let xb = &xc[r0 * d..(r0 + c) * d];
        let z = grow(&mut ws.block, c * s);
        // pre = xc·W_enc + b_enc, then ReLU in place.
        z.par_chunks_mut(s).for_each(|row| row.copy_from_slice(&p.b_enc));
        matmul((c, s, d), z, s, true, xb, (d, 1), &p.enc, (1, d), kernels);
        t[0] += clock.lap();
        // ReLU in place, with each latent's firings and sum and the L1 term, in one branch-free pass (f32
        // sums within a block, f64 across blocks).
        let parts: Vec<(Vec<u32>, Vec<f32>, f64)> = z
            .par_chunks_mut(s * SUM_ROWS)
            .map(|rows| {
                let (mut f, mut zs, mut l1b) = (vec![0u32; s], vec![0f32; s], 0f64);
                for row in rows.chunks_mut(s) {
                    let mut acc = 0f32;
                    for (((v, f), zs), &nm) in row.iter_mut().zip(f.iter_mut()).zip(zs.iter_mut()).zip(&norms) {
                        let r = v.max(0.0);
                        *v = r;
                        *f += (r > 0.0) as u32;
                        *zs += r;
                        acc += r * nm;
                    }
                    l1b += acc as f64;
                }
                (f, zs, l1b)
            })
            .collect();
        let (mut f, mut zs, mut l1b) = (vec![0u32; s], vec![0f32; s], 0f64);
        for (pf, pz, pl) in &parts {
            f.iter_mut().zip(pf).for_each(|(x, y)| *x += y);
            zs.iter_mut().zip(pz).for_each(|(x, y)| *x += y);
            l1b += pl;
        }
        active += f.iter().map(|&v| v as u64).sum::<u64>();
        fired.iter_mut().zip(&f).for_each(|(x, y)| *x += y);
        z_sum.iter_mut().zip(&zs).for_each(|(x, &y)| *x += y as f64);
        l1_sum += l1b;
        t[5] += clock.lap();
        // x̂ = z·W_dec + b_dec; e = x̂ − x; d(MSE)/dx̂ = 2e/n.
        let dxb = &mut dx_hat[r0 * d..(r0 + c) * d];
        dxb.par_chunks_mut(d).for_each(|row| row.copy_from_slice(&p.b_dec));
        matmul((c, d, s), dxb, d, true, z, (s, 1), &p.dec, (d, 1), kernels);
        t[1] += clock.lap();
        let xr = &x[r0 * d..(r0 + c) * d];
        sq_err += ordered_sum(dxb.par_chunks_mut(d).zip(xr.par_chunks(d)).map(|(row, x)| {
            let mut acc = 0f64;
            for (v, &x) in row.iter_mut().zip(x) {
                let e = *v - x;
                acc += (e as f64) * (e as f64);
                *v = e * (2.0 * inv_n) as f32;
            }
            acc
        }));
        for row in dxb.chunks(d) {
            for (b, &g) in grads.b_dec.iter_mut().zip(row) {
                *b += g;
            }
        }
        t[5] += clock.lap();
        // dW_dec += zᵀ·dx̂
        matmul((s, d, c), &mut grads.dec, d, true, z, (1, s), dxb, (d, 1), kernels);
        t[2] += clock.lap();
        // dz = dx̂·W_decᵀ + l1/n·‖W_dec_j‖; d_pre = dz where z > 0.
        let dz = grow(&mut ws.block2, c * s);
        dz.par_chunks_mut(s).for_each(|row| row.copy_from_slice(&l1_grad));
        matmul((c, s, d), dz, s, true, dxb, (d, 1), &p.dec, (1, d), kernels);
        t[3] += clock.lap();
        let parts: Vec<Vec<f32>> = dz
            .par_chunks_mut(s * SUM_ROWS)
            .zip(z.par_chunks(s * SUM_ROWS))
            .map(|(g, z)| {
                let mut db = vec![0f32; s];
                for (g, z) in g.chunks_mut(s).zip(z.chunks(s)) {
                    for ((g, &z), b) in g.iter_mut().zip(z).zip(db.iter_mut()) {
                        let kept = if z > 0.0 { *g } else { 0.0 };
                        *g = kept;
                        *b += kept;
                    }
                }
                db
            })
            .collect();
        let mut db = vec![0f32; s];
        for p in &parts {
            db.iter_mut().zip(p).for_each(|(x, y)| *x += y);
        }
        grads.b_enc.iter_mut().zip(&db).for_each(|(x, y)| *x += y);
        t[5] += clock.lap();
        // dW_encᵀ += d_preᵀ·xc
        matmul((s, d, c), &mut grads.enc, d, true, dz, (1, s), xb, (d, 1), kernels);
        t[4] += clock.lap();
    }
    let mut phases = vec![
        ("encoder", t[0]),
        ("decoder", t[1]),
        ("W_dec gradient", t[2]),
        ("decoder input gradient", t[3]),
        ("W_enc gradient", t[4]),
        ("ReLU, masks and sums", t[5]),
    ];
    // The L1 term through the decoder norms: d/dW_dec_j of l1/n·‖W_dec_j‖·Σ_i z_ij.
    grads.dec.par_chunks_mut(d).zip(p.dec.par_chunks(d)).enumerate().for_each(|(j, (g, w))| {
        let nm = norms[j].max(1e-12);
        let f = (l1 * inv_n * z_sum[j]) as f32 / nm;
        if f != 0.0 {
            for (g, &w) in g.iter_mut().zip(w) {
                *g += f * w;
            }
        }
    });
    phases.push(("L1 through the decoder norms", clock.lap()));
    Measured {
        mse: sq_err * inv_n,
        sparsity_loss: l1 * inv_n * l1_sum,
        l0: active as f64 * inv_n,
        explained_variance: 0.0,
        fired,
        phases,
    }
}

/// The `k` largest of `values` at `candidates` (all of them when `None`), ties to the lower index, into
/// `out` sorted by latent.
fn pick_top(values: &[f32], candidates: Option<&[u32]>, k: usize, relu: bool, out: &mut [Pick]) {
    // A min-heap of (value, latent) ordered by value, then by the *higher* latent first, so that among equal
    // values the later latent is the one pushed out: scanning latents upwards, a latent only enters by being
    // strictly larger than the heap's least.
    let less = |a: &Pick, b: &Pick| a.value < b.value || (a.value == b.value && a.latent > b.latent);
    let mut heap: Vec<Pick> = Vec::with_capacity(k);
    let visit = |j: u32, v: f32, heap: &mut Vec<Pick>| {
        if heap.len() < k {
            heap.push(Pick { latent: j, value: v, grad: 0.0 });
            let mut i = heap.len() - 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                if less(&heap[i], &heap[parent]) {
                    heap.swap(i, parent);
                    i = parent;
                } else {
                    break;
                }
            }
        } else if v > heap[0].value {
            heap[0] = Pick { latent: j, value: v, grad: 0.0 };
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut m = i;
                if l < k && less(&heap[l], &heap[m]) {
                    m = l;
                }
                if r < k && less(&heap[r], &heap[m]) {
                    m = r;
                }
                if m == i {
                    break;
                }
                heap.swap(i, m);
                i = m;
            }
        }
    };
    match candidates {
        None => {
            for (j, &v) in values.iter().enumerate() {
                visit(j as u32, v, &mut heap);
            }
        }
        Some(c) => {
            for &j in c {
                visit(j, values[j as usize], &mut heap);
            }
        }
    }
    heap.sort_unstable_by_key(|p| p.latent);
    for (o, mut h) in out.iter_mut().zip(heap) {
        if relu {
            h.value = h.value.max(0.0);
        }
        *o = h;
    }
}

/// `acc += f·v`
#[inline]
fn axpy(acc: &mut [f32], f: f32, v: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(v) {
        *a += f * v;
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so the compiler can keep them in vector lanes.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[allow(clippy::too_many_arguments)]
fn sparse(
    p: &Flat,
    x: &[f32],
    setup: &StepSetup,
    grads: &mut Flat,
    ws: &mut Workspace,
    kernels: Kernels,
    n: usize,
    k: usize,
) -> Measured {
    let (d, s) = (p.d_in, p.d_sae);
    let k = k.min(s);
    let inv_n = 1.0 / n as f64;
    let dead: Vec<u32> = setup.dead.iter().enumerate().filter(|(_, d)| **d).map(|(j, _)| j as u32).collect();
    let k_aux = if setup.aux_coefficient > 0.0 { setup.k_aux.min(dead.len()) } else { 0 };
    let xc = &ws.xc[..n * d];
    if ws.picks.len() < n * k {
        ws.picks.resize(n * k, Pick::default());
    }
    if ws.aux_picks.len() < n * k_aux {
        ws.aux_picks.resize(n * k_aux, Pick::default());
    }
    let picks = &mut ws.picks[..n * k];
    let aux_picks = &mut ws.aux_picks[..n * k_aux];
    let mut clock = Clock::start();
    let (mut t_encoder, mut t_pick) = (0.0, 0.0);
    // The encoder, a block of tokens at a time; each token's picks are taken from its block.
    for r0 in (0..n).step_by(ROW_BLOCK) {
        let c = ROW_BLOCK.min(n - r0);
        let pre = grow(&mut ws.block, c * s);
        pre.par_chunks_mut(s).for_each(|row| row.copy_from_slice(&p.b_enc));
        matmul((c, s, d), pre, s, true, &xc[r0 * d..(r0 + c) * d], (d, 1), &p.enc, (1, d), kernels);
        t_encoder += clock.lap();
        let pb = &mut picks[r0 * k..(r0 + c) * k];
        if k_aux > 0 {
            let ab = &mut aux_picks[r0 * k_aux..(r0 + c) * k_aux];
            pre.par_chunks(s).zip(pb.par_chunks_mut(k)).zip(ab.par_chunks_mut(k_aux)).for_each(|((row, o), a)| {
                pick_top(row, None, k, true, o);
                pick_top(row, Some(&dead), k_aux, false, a);
            });
        } else {
            pre.par_chunks(s).zip(pb.par_chunks_mut(k)).for_each(|(row, o)| pick_top(row, None, k, true, o));
        }
        t_pick += clock.lap();
    }
    let mut phases = vec![("encoder", t_encoder), ("top-k", t_pick)];
    // Per token: x̂ from its k latents, the error, d(MSE)/dx̂, and the gradient into each active latent;
    // then AuxK from the dead latents' picks against the detached residual x − x̂.
    let scale = if k_aux > 0 { (dead.len() as f64 / k_aux as f64).min(1.0) * setup.aux_coefficient } else { 0.0 };
    let dx_hat = grow(&mut ws.dx_hat, n * d);
    let d_aux = grow(&mut ws.d_aux, if k_aux > 0 { n * d } else { 0 });
    let per_token = |i: usize, o: &mut [Pick], a: &mut [Pick], dxh: &mut [f32], dax: &mut [f32]| -> (f64, f64) {
        let xi = &x[i * d..(i + 1) * d];
        dxh.copy_from_slice(&p.b_dec);
        for pk in o.iter() {
            if pk.value > 0.0 {
                axpy(dxh, pk.value, &p.dec[pk.latent as usize * d..][..d]);
            }
        }
        let mut sq = 0f64;
        for (v, &x) in dxh.iter_mut().zip(xi) {
            *v -= x; // e = x̂ − x
            sq += (*v as f64) * (*v as f64);
        }
        let mut aux_sq = 0f64;
        if !a.is_empty() {
            // aux_e = Σ pre_j W_dec_j − (x − x̂) = Σ pre_j W_dec_j + e
            dax.copy_from_slice(dxh);
            for pk in a.iter() {
                axpy(dax, pk.value, &p.dec[pk.latent as usize * d..][..d]);
            }
            let f = (2.0 * scale * inv_n) as f32;
            for v in dax.iter_mut() {
                aux_sq += (*v as f64) * (*v as f64);
                *v *= f;
            }
            for pk in a.iter_mut() {
                pk.grad = dot(dax, &p.dec[pk.latent as usize * d..][..d]);
            }
        }
        let f = (2.0 * inv_n) as f32;
        dxh.iter_mut().for_each(|v| *v *= f);
        for pk in o.iter_mut() {
            pk.grad = if pk.value > 0.0 { dot(dxh, &p.dec[pk.latent as usize * d..][..d]) } else { 0.0 };
        }
        (sq, aux_sq)
    };
    let per_token_sums = if k_aux > 0 {
        picks
            .par_chunks_mut(k)
            .zip(aux_picks.par_chunks_mut(k_aux))
            .zip(dx_hat.par_chunks_mut(d).zip(d_aux.par_chunks_mut(d)))
            .enumerate()
            .map(|(i, ((o, a), (dxh, dax)))| per_token(i, o, a, dxh, dax))
            .collect::<Vec<_>>()
    } else {
        picks
            .par_chunks_mut(k)
            .zip(dx_hat.par_chunks_mut(d))
            .enumerate()
            .map(|(i, (o, dxh))| per_token(i, o, &mut [], dxh, &mut []))
            .collect::<Vec<_>>()
    };
    let (sq_err, aux_sq) = per_token_sums.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    for row in dx_hat.chunks(d) {
        for (b, &g) in grads.b_dec.iter_mut().zip(row) {
            *b += g;
        }
    }
    phases.push(("decoder and its gradient (sparse)", clock.lap()));
    let mut fired = vec![0u32; s];
    let mut active = 0u64;
    for pk in picks.iter() {
        if pk.value > 0.0 {
            fired[pk.latent as usize] += 1;
            active += 1;
        }
    }
    // The weight gradients, scattered by latent: each task owns a range of latents and walks every token's
    // picks in token order.
    let ranges = (kernels.threads * 4).max(1);
    let per = s.div_ceil(ranges);
    let picks = &*picks;
    let aux_picks = &*aux_picks;
    let (dx_hat, d_aux) = (&*dx_hat, &*d_aux);
    grads
        .enc
        .par_chunks_mut(per * d)
        .zip(grads.dec.par_chunks_mut(per * d))
        .zip(grads.b_enc.par_chunks_mut(per))
        .enumerate()
        .for_each(|(r, ((genc, gdec), gb))| {
            let lo = (r * per) as u32;
            let hi = lo + gb.len() as u32;
            let mut apply = |list: &[Pick], width: usize, dl: &[f32]| {
                for (i, tok) in list.chunks(width).enumerate() {
                    for pk in tok {
                        if pk.latent >= lo && pk.latent < hi && (pk.grad != 0.0 || pk.value != 0.0) {
                            let j = (pk.latent - lo) as usize;
                            axpy(&mut genc[j * d..(j + 1) * d], pk.grad, &xc[i * d..(i + 1) * d]);
                            axpy(&mut gdec[j * d..(j + 1) * d], pk.value, &dl[i * d..(i + 1) * d]);
                            gb[j] += pk.grad;
                        }
                    }
                }
            };
            // Top-k latents: value ReLU'd (0 for an inactive pick, which then adds nothing).
            apply(picks, k, dx_hat);
            if k_aux > 0 {
                apply(aux_picks, k_aux, d_aux);
            }
        });
    phases.push(("weight gradients (sparse)", clock.lap()));
    Measured {
        mse: sq_err * inv_n,
        sparsity_loss: scale * inv_n * aux_sq,
        l0: active as f64 * inv_n,
        explained_variance: 0.0,
        fired,
        phases,
    }
}

/// Adam's update of `p` with gradients `g` scaled by `g_scale` (the clipping), bias-corrected for step
/// `t` (from 1), with no weight decay.
#[allow(clippy::too_many_arguments)]
pub fn adam(
    p: &mut Flat,
    m: &mut Flat,
    v: &mut Flat,
    g: &Flat,
    g_scale: f64,
    lr: f64,
    (b1, b2, eps): (f64, f64, f64),
    t: i32,
) {
    let c1 = 1.0 - b1.powi(t);
    let c2 = 1.0 - b2.powi(t);
    let (b1f, b2f, gs) = (b1 as f32, b2 as f32, g_scale as f32);
    let (inv_c1, inv_c2, epsf, lrf) = ((1.0 / c1) as f32, (1.0 / c2) as f32, eps as f32, lr as f32);
    const CH: usize = 1 << 14;
    for (((p, m), v), g) in p.parts_mut().into_iter().zip(m.parts_mut()).zip(v.parts_mut()).zip(g.parts()) {
        p.par_chunks_mut(CH).zip(m.par_chunks_mut(CH)).zip(v.par_chunks_mut(CH)).zip(g.par_chunks(CH)).for_each(
            |(((p, m), v), g)| {
                for i in 0..p.len() {
                    let g = g[i] * gs;
                    m[i] = b1f * m[i] + (1.0 - b1f) * g;
                    v[i] = b2f * v[i] + (1.0 - b2f) * g * g;
                    p[i] -= lrf * (m[i] * inv_c1) / ((v[i] * inv_c2).sqrt() + epsf);
                }
            },
        );
    }
}
