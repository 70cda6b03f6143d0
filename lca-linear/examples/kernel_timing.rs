//! Throughput of the solver kernels, in cache and streaming from memory.
//!
//! ```text
//! cargo run --release -p lca-core --example kernel_timing
//! ```

use std::time::Instant;

use lca_linear::kernels::{accumulate_gradient, logits};

fn main() {
    let (rows, d, c) = (18_000usize, 9_984usize, 10usize);
    let mut rng = lca_core::rng::Rng::new(1);
    let x: Vec<f32> = (0..rows * d).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..c * d).map(|_| rng.normal() as f32).collect();
    let p: Vec<f32> = (0..rows * c).map(|_| rng.normal() as f32).collect();
    let flops = 2.0 * (rows * d * c) as f64;
    let block = 64;

    let mut out = vec![0.0f32; rows * c];
    let t = Instant::now();
    for r in (0..rows).step_by(block) {
        let end = (r + block).min(rows);
        logits(&x[r * d..end * d], d, &w, c, &mut out[r * c..end * c]);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "logits, streaming:        {s:.3}s  {:.1} GFLOP/s",
        flops / s / 1e9
    );

    let t = Instant::now();
    for _ in 0..(rows / block) {
        logits(&x[..block * d], d, &w, c, &mut out[..block * c]);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "logits, one block cached: {s:.3}s  {:.1} GFLOP/s",
        flops / s / 1e9
    );

    let mut grad = vec![0.0f32; c * d];
    let t = Instant::now();
    for r in (0..rows).step_by(block) {
        let end = (r + block).min(rows);
        accumulate_gradient(&p[r * c..end * c], &x[r * d..end * d], d, c, &mut grad, &[]);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "gradient, streaming:      {s:.3}s  {:.1} GFLOP/s",
        flops / s / 1e9
    );

    let t = Instant::now();
    for _ in 0..(rows / block) {
        accumulate_gradient(&p[..block * c], &x[..block * d], d, c, &mut grad, &[]);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "gradient, one block cached: {s:.3}s  {:.1} GFLOP/s",
        flops / s / 1e9
    );
    println!(
        "checksum {}",
        out.iter().sum::<f32>() + grad.iter().sum::<f32>()
    );
}
