use gemm::{Parallelism, gemm};
fn t(name: &str, m: usize, n: usize, k: usize, dst_rs: isize, lhs: (isize, isize), rhs: (isize, isize), reps: usize) {
    let a = vec![0.01f32; m.max(k) * k.max(m) + 16];
    let b = vec![0.02f32; k.max(n) * n.max(k) * 1 + 16];
    let mut c = vec![0f32; m * n + 16];
    let a = if a.len() < m * k { vec![0.01; m * k] } else { a };
    let b = if b.len() < k * n { vec![0.01; k * n] } else { b };
    let run = |c: &mut Vec<f32>| unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            dst_rs,
            true,
            a.as_ptr(),
            lhs.1,
            lhs.0,
            b.as_ptr(),
            rhs.1,
            rhs.0,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(2),
        );
    };
    run(&mut c);
    let s = std::time::Instant::now();
    for _ in 0..reps {
        run(&mut c);
    }
    let dt = s.elapsed().as_secs_f64() / reps as f64;
    println!("{name}: {:.1} ms {:.0} GFLOP/s", dt * 1e3, 2.0 * (m * n * k) as f64 / dt / 1e9);
}
fn main() {
    let (d, s) = (768usize, 16384usize);
    for c in [512usize, 1024, 4096] {
        let r = (4096 / c).max(1);
        println!("-- block {c}");
        t("enc  pre=xc*Wenc (rhs enc^T)", c, s, d, s as isize, (d as isize, 1), (1, d as isize), r);
        t("enc  pre=xc*Wenc (rhs row-major)", c, s, d, s as isize, (d as isize, 1), (s as isize, 1), r);
        t("dec  xh=z*Wdec", c, d, s, d as isize, (s as isize, 1), (d as isize, 1), r);
        t("dWd  z^T*dxh", s, d, c, d as isize, (1, s as isize), (d as isize, 1), r);
        t("dz   dxh*Wdec^T", c, s, d, s as isize, (d as isize, 1), (1, d as isize), r);
    }
}
