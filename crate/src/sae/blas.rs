//! A system BLAS, opened at run time, for the CPU training step's products: optional (nothing links
//! against it, and the `gemm` crate stays the default), because on some machines it is clearly faster
//! (measured here: Debian's OpenBLAS 0.3.21 at 178–190 GFLOP/s on the step's shapes, against 130–157 for
//! `gemm`). `Blas::open("openblas")` looks for `libopenblas.so.0`; any path to a library with
//! `cblas_sgemm` works.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use crate::error::{Error, Result};

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
type SetThreads = unsafe extern "C" fn(c_int);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// An opened BLAS library and its `cblas_sgemm`.
pub struct Blas {
    name: String,
    handle: *mut c_void,
    sgemm: Sgemm,
    set_threads: Option<SetThreads>,
}

// SAFETY: the handle is only used to look symbols up and to close the library; cblas_sgemm may be called
// from any thread.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

impl std::fmt::Debug for Blas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blas({})", self.name)
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() { "unknown error".into() } else { unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned() }
}

impl Blas {
    /// `openblas` (the system's `libopenblas.so.0`) or a path to a shared library with `cblas_sgemm`.
    pub fn open(name: &str) -> Result<Blas> {
        let file = match name {
            "openblas" => "libopenblas.so.0",
            other => other,
        };
        let c = CString::new(file).map_err(|_| Error::InvalidArgument(format!("BLAS `{name}`: a NUL in its name")))?;
        // SAFETY: a plain dlopen of a NUL-terminated name.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(Error::InvalidArgument(format!("cannot open the BLAS `{file}`: {}", dl_error())));
        }
        let symbol = |s: &str| {
            let c = CString::new(s).expect("no NUL");
            // SAFETY: handle is open; the name is NUL-terminated.
            unsafe { libc::dlsym(handle, c.as_ptr() as *const c_char) }
        };
        let sgemm = symbol("cblas_sgemm");
        if sgemm.is_null() {
            // SAFETY: handle came from dlopen above.
            unsafe { libc::dlclose(handle) };
            return Err(Error::InvalidArgument(format!("the BLAS `{file}` has no cblas_sgemm")));
        }
        let set_threads = symbol("openblas_set_num_threads");
        Ok(Blas {
            name: file.to_string(),
            handle,
            // SAFETY: cblas_sgemm and openblas_set_num_threads have these C signatures.
            sgemm: unsafe { std::mem::transmute::<*mut c_void, Sgemm>(sgemm) },
            set_threads: (!set_threads.is_null())
                .then(|| unsafe { std::mem::transmute::<*mut c_void, SetThreads>(set_threads) }),
        })
    }

    /// The library's file name or path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the library for `n` threads (OpenBLAS; others keep their own setting).
    pub fn set_threads(&self, n: usize) {
        if let Some(f) = self.set_threads {
            // SAFETY: openblas_set_num_threads takes a thread count.
            unsafe { f(n.max(1) as c_int) }
        }
    }

    /// `dst[m×n] (row stride dst_rs) = (accumulate ? dst : 0) + lhs·rhs`, the operands given by row and
    /// column strides of which one must be 1 (a row-major matrix or a transposed one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sgemm(
        &self,
        (m, n, k): (usize, usize, usize),
        dst: &mut [f32],
        dst_rs: usize,
        accumulate: bool,
        lhs: &[f32],
        (lhs_rs, lhs_cs): (usize, usize),
        rhs: &[f32],
        (rhs_rs, rhs_cs): (usize, usize),
    ) {
        let layout = |rs: usize, cs: usize| if cs == 1 { (NO_TRANS, rs) } else { (TRANS, cs) };
        let ((ta, lda), (tb, ldb)) = (layout(lhs_rs, lhs_cs), layout(rhs_rs, rhs_cs));
        assert!(lhs_cs == 1 || lhs_rs == 1, "sgemm: the left operand needs a unit stride");
        assert!(rhs_cs == 1 || rhs_rs == 1, "sgemm: the right operand needs a unit stride");
        // SAFETY: the caller (step::matmul) has checked every operand's extent.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                ta,
                tb,
                m as c_int,
                n as c_int,
                k as c_int,
                1.0,
                lhs.as_ptr(),
                lda as c_int,
                rhs.as_ptr(),
                ldb as c_int,
                if accumulate { 1.0 } else { 0.0 },
                dst.as_mut_ptr(),
                dst_rs as c_int,
            )
        }
    }
}

impl crate::display::Render for Blas {
    fn bundle(&self) -> crate::display::MimeBundle {
        crate::display::Card::new("BLAS for the SAE training step")
            .fact("library", self.name.clone())
            .fact("cblas_sgemm", "found")
            .fact(
                "thread control",
                if self.set_threads.is_some() { "openblas_set_num_threads" } else { "the library's own" },
            )
            .bundle()
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and nothing uses it after this.
        unsafe { libc::dlclose(self.handle) };
    }
}
