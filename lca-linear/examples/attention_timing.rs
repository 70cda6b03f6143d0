//! Time of one sequence's attention on the shapes of all-MiniLM-L6-v2
//! (12 heads of 32) at a few sequence lengths:
//!
//!     cargo run --release -p lca-linear --example attention_timing
//!
//! Prints microseconds per call and the multiply-adds' rate (queries ×
//! keys × head width × heads × 2, for the scores and the weighted values).

use std::time::Instant;

use lca_linear::kernels::elementwise::{Heads, Visibility, attention};

fn main() {
    let heads = Heads {
        query: 12,
        key_value: 12,
        width: 32,
    };
    let mut rng = lca_core::rng::Rng::new(1);
    for tokens in [16usize, 30, 64, 128] {
        let qkv: Vec<f32> = (0..tokens * heads.row())
            .map(|_| rng.normal() as f32)
            .collect();
        let additive = vec![0.0f32; tokens];
        let mut context = vec![0.0f32; tokens * heads.output()];
        let mut scratch = Vec::new();
        let repeats = 20_000 / tokens;
        let start = Instant::now();
        for _ in 0..repeats {
            attention(
                &qkv,
                &additive,
                heads,
                Visibility::All,
                0.17,
                &mut scratch,
                &mut context,
            );
        }
        let seconds = start.elapsed().as_secs_f64() / repeats as f64;
        let fmas = 2.0 * (tokens * tokens * heads.width * heads.query) as f64;
        println!(
            "{tokens:>4} tokens: {:.1} µs, {:.1} GFMA/s",
            seconds * 1e6,
            fmas / seconds / 1e9
        );
    }
}
