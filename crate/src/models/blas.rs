//! Single-precision matrix products through the system's OpenBLAS when it is installed, else candle's own
//! `gemm`. OpenBLAS is found at run time (`dlopen("libopenblas.so.0")`: Debian's `libopenblas0-pthread`,
//! which `scripts/setup.sh` installs when it can), so nothing is needed to build saekit and a machine
//! without it works the same, only slower: on this project's 2-core machines OpenBLAS's sgemm runs the
//! model shapes about twice as fast as candle's pure-Rust kernels. `SAEKIT_BLAS=0` turns it off.
//!
//! Threads: OpenBLAS is told `RAYON_NUM_THREADS` when it is set (as candle is), else it uses one per core.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::error::Result;

type Sgemm = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// The library's `cblas_sgemm`, if OpenBLAS is installed and not turned off. Looked up once per copy of
/// saekit (under evcxr, once per cell library; `dlopen` hands every copy the same loaded library).
fn sgemm() -> Option<Sgemm> {
    static SGEMM: OnceLock<Option<Sgemm>> = OnceLock::new();
    *SGEMM.get_or_init(|| {
        if std::env::var("SAEKIT_BLAS").is_ok_and(|v| v == "0") {
            return None;
        }
        // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are OpenBLAS's C API, whose
        // signatures are the ones declared here, and the library is never unloaded.
        unsafe {
            let handle = ["libopenblas.so.0", "libopenblas.so"]
                .iter()
                .map(|name| {
                    let name = std::ffi::CString::new(*name).unwrap_or_default();
                    libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL)
                })
                .find(|h| !h.is_null())?;
            let symbol = |name: &std::ffi::CStr| -> *mut c_void { libc::dlsym(handle, name.as_ptr()) };
            let gemm = symbol(c"cblas_sgemm");
            if gemm.is_null() {
                return None;
            }
            if let Some(threads) = std::env::var("RAYON_NUM_THREADS").ok().and_then(|t| t.parse::<c_int>().ok()) {
                let set = symbol(c"openblas_set_num_threads");
                if !set.is_null() && threads > 0 {
                    let set: unsafe extern "C" fn(c_int) = std::mem::transmute(set);
                    set(threads);
                }
            }
            Some(std::mem::transmute::<*mut c_void, Sgemm>(gemm))
        }
    })
}

/// Whether matrix products go through OpenBLAS in this process.
pub fn available() -> bool {
    sgemm().is_some()
}

/// `a · b` for `a` `[m, k]` and `b` `[k, n]`, where `b` may be a transposed view of a contiguous `[n, k]`
/// (a torch `Linear` weight). Falls back to candle when OpenBLAS is missing or the operands are not plain
/// f32 CPU matrices.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if let Some(gemm) = sgemm()
        && let Some(c) = blas_matmul(gemm, a, b)?
    {
        return Ok(c);
    }
    Ok(a.matmul(b)?)
}

fn blas_matmul(gemm: Sgemm, a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if a.dtype() != DType::F32 || b.dtype() != DType::F32 || a.rank() != 2 || b.rank() != 2 || !a.device().is_cpu() {
        return Ok(None);
    }
    let a = a.contiguous()?;
    let (m, k) = a.dims2()?;
    let (k2, n) = b.dims2()?;
    if k != k2 || m == 0 || n == 0 || k == 0 {
        return Ok(None);
    }
    // b as stored: row-major [k, n] (stride [n, 1]) or the transpose of a row-major [n, k] (stride [1, k]).
    let trans_b = match b.stride() {
        [s0, 1] if *s0 == n => NO_TRANS,
        [1, s1] if *s1 == k => TRANS,
        _ => return Ok(None),
    };
    let ldb = if trans_b == NO_TRANS { n } else { k };
    let mut c = vec![0f32; m * n];
    {
        let (a_storage, a_layout) = a.storage_and_layout();
        let (b_storage, b_layout) = b.storage_and_layout();
        let (Storage::Cpu(CpuStorage::F32(a_data)), Storage::Cpu(CpuStorage::F32(b_data))) = (&*a_storage, &*b_storage)
        else {
            return Ok(None);
        };
        let a_data = &a_data[a_layout.start_offset()..];
        let b_data = &b_data[b_layout.start_offset()..];
        if a_data.len() < m * k || b_data.len() < k * n {
            return Ok(None);
        }
        // SAFETY: the slices hold at least m·k and k·n values laid out as the leading dimensions say, and
        // `c` holds m·n; OpenBLAS reads a and b and writes c only.
        unsafe {
            gemm(
                ROW_MAJOR,
                NO_TRANS,
                trans_b,
                m as c_int,
                n as c_int,
                k as c_int,
                1.0,
                a_data.as_ptr(),
                k as c_int,
                b_data.as_ptr(),
                ldb as c_int,
                0.0,
                c.as_mut_ptr(),
                n as c_int,
            );
        }
    }
    Ok(Some(Tensor::from_vec(c, (m, n), a.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn products_agree_with_candle_for_both_weight_layouts() {
        let a = Tensor::arange(0f32, 6.0 * 5.0, &Device::Cpu).unwrap().reshape((6, 5)).unwrap();
        let a = ((a * 0.37).unwrap().sin()).unwrap();
        let w = Tensor::arange(0f32, 5.0 * 7.0, &Device::Cpu).unwrap().reshape((5, 7)).unwrap();
        let w = ((w * 0.21).unwrap().cos()).unwrap();
        let w_t = w.t().unwrap().contiguous().unwrap().t().unwrap(); // same values, stored [7, 5]
        for b in [&w, &w_t] {
            let ours = matmul(&a, b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let candle = a.matmul(b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = ours.iter().zip(&candle).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{worst}");
        }
        println!("OpenBLAS in use: {}", available());
    }
}
