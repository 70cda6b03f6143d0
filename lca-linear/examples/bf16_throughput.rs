//! Throughput of the bfloat16 dense-layer product on the shapes of an
//! all-MiniLM-L6-v2 batch (about 1,100 token rows; hidden 384, MLP 1,536):
//!
//!     cargo run --release -p lca-linear --example bf16_throughput -- [THREADS]
//!
//! Prints milliseconds and GFLOP/s (2·rows·inputs·outputs per product).
//! On a CPU without AVX512-BF16 this measures the portable code.

use std::time::Instant;

use lca_linear::kernels::bf16::{PackedWeights, product, unit};

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    println!("unit: {:?}; threads: {threads}", unit());
    let shapes = [
        ("query-key-value", 1100, 384, 1152),
        ("MLP in", 1100, 384, 1536),
        ("MLP out", 1100, 1536, 384),
        ("attention out", 1100, 384, 384),
    ];
    for (name, rows, inputs, outputs) in shapes {
        let x: Vec<f32> = (0..rows * inputs)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..outputs * inputs)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let packed = PackedWeights::pack(&w, outputs, inputs);
        let mut out = vec![0.0; rows * outputs];
        pool.install(|| product(&x, &packed, &mut out));
        let repeats = 20;
        let start = Instant::now();
        for _ in 0..repeats {
            pool.install(|| product(&x, &packed, &mut out));
        }
        let seconds = start.elapsed().as_secs_f64() / f64::from(repeats);
        let flops = 2.0 * (rows * inputs * outputs) as f64;
        println!(
            "{name:>16} {rows}×{inputs}×{outputs}: {:.2} ms, {:.0} GFLOP/s",
            seconds * 1e3,
            flops / seconds / 1e9
        );
    }
}
