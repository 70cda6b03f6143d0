//! `softmax_pass`, the data term of a probe summed over rows for solvers
//! that add the sums of several workers: against a direct computation, and
//! the same sums whatever the thread count and however the rows are cut.

use lca_core::context::RunContext;
use lca_linear::{SoftmaxSums, softmax_pass};
use ndarray::{Array1, Array2, s};

/// Rows × neurons values and labels from a fixed generator.
fn data(rows: usize, neurons: usize, classes: usize) -> (Array2<f32>, Vec<u32>) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x = Array2::from_shape_simple_fn((rows, neurons), || (next() * 4.0 - 2.0) as f32);
    let y = (0..rows)
        .map(|_| (next() * classes as f64) as u32)
        .collect();
    (x, y)
}

#[test]
fn a_hand_computed_row() {
    // One row x = (1, 2); W = [[1, 0], [0, 1]], b = (0, ln 2): logits (1, 2 + ln 2).
    let x = Array2::from_shape_vec((1, 2), vec![1.0f32, 2.0]).unwrap();
    let w = Array2::from_shape_vec((2, 2), vec![1.0f32, 0.0, 0.0, 1.0]).unwrap();
    let b = Array1::from(vec![0.0, 2f64.ln()]);
    let sums = softmax_pass(x.view(), &[0], &w, &b, true).unwrap();
    let e = std::f64::consts::E;
    let p0 = e / (e + 2.0 * e * e);
    assert_eq!((sums.rows, sums.correct), (1, 0));
    assert!((sums.loss + p0.ln()).abs() < 1e-6, "{}", sums.loss);
    let gb = sums.grad_b.unwrap();
    assert!((gb[0] - (p0 - 1.0)).abs() < 1e-6 && (gb[1] - (1.0 - p0)).abs() < 1e-6);
    let gw = sums.grad_w.unwrap();
    // (p − onehot) ⊗ x.
    for (k, r) in [(0, p0 - 1.0), (1, 1.0 - p0)] {
        assert!((gw[[k, 0]] - r).abs() < 1e-6 && (gw[[k, 1]] - 2.0 * r).abs() < 1e-6);
    }
}

#[test]
fn sums_match_a_direct_computation_at_any_thread_count_and_cut() {
    let (x, y) = data(5000, 37, 5);
    let w = Array2::from_shape_fn((5, 37), |(k, j)| ((k * 37 + j) % 11) as f32 * 0.05 - 0.25);
    let b = Array1::from(vec![0.1, -0.2, 0.0, 0.3, -0.1]);
    // Direct, in f64.
    let (mut loss, mut correct) = (0.0, 0usize);
    let mut gw = Array2::<f64>::zeros((5, 37));
    let mut gb = Array1::<f64>::zeros(5);
    for (row, &label) in x.outer_iter().zip(&y) {
        let z: Vec<f64> = (0..5)
            .map(|k| {
                row.iter()
                    .zip(w.row(k))
                    .map(|(&a, &c)| f64::from(a) * f64::from(c))
                    .sum::<f64>()
                    + b[k]
            })
            .collect();
        let best = (0..5).fold(0, |m, k| if z[k] > z[m] { k } else { m });
        correct += usize::from(best == label as usize);
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = z.iter().map(|v| (v - max).exp()).sum();
        loss += max + total.ln() - z[label as usize];
        for k in 0..5 {
            let r = (z[k] - max).exp() / total - f64::from(u8::from(k == label as usize));
            gb[k] += r;
            for j in 0..37 {
                gw[[k, j]] += r * f64::from(row[j]);
            }
        }
    }
    let one = RunContext::new(0, 1).install(|| softmax_pass(x.view(), &y, &w, &b, true).unwrap());
    assert_eq!((one.rows, one.correct), (5000, correct));
    assert!((one.loss - loss).abs() < 1e-6 * loss);
    let (ow, ob) = (one.grad_w.clone().unwrap(), one.grad_b.clone().unwrap());
    assert!(
        ow.iter().zip(&gw).all(|(a, b)| (a - b).abs() < 1e-3),
        "weight gradient"
    );
    // Logits are f32 products: each row's terms agree to about 1e-7.
    assert!(
        ob.iter().zip(&gb).all(|(a, b)| (a - b).abs() < 1e-3),
        "bias gradient"
    );
    // Two threads: the same bits.
    let two = RunContext::new(0, 2).install(|| softmax_pass(x.view(), &y, &w, &b, true).unwrap());
    assert_eq!(two.loss.to_bits(), one.loss.to_bits());
    assert_eq!(two.grad_w, one.grad_w);
    // Rows cut into ranges and added in order: the same counts, the same
    // sums to rounding.
    let mut added = SoftmaxSums::zero(5, 37, true);
    for range in [0..1000, 1000..2048, 2048..4999, 4999..5000] {
        let part = softmax_pass(x.slice(s![range.clone(), ..]), &y[range], &w, &b, true).unwrap();
        added.add(&part);
    }
    assert_eq!((added.rows, added.correct), (5000, correct));
    assert!((added.loss - one.loss).abs() < 1e-9 * loss);
    // Without the gradient, only the loss and counts.
    let plain = softmax_pass(x.view(), &y, &w, &b, false).unwrap();
    assert!(plain.grad_w.is_none() && plain.grad_b.is_none());
    assert_eq!(plain.loss.to_bits(), one.loss.to_bits());
}

#[test]
fn shapes_and_labels_are_checked() {
    let (x, y) = data(10, 4, 3);
    let w = Array2::<f32>::zeros((3, 4));
    let b = Array1::<f64>::zeros(3);
    assert!(softmax_pass(x.view(), &y[..9], &w, &b, true).is_err());
    assert!(softmax_pass(x.view(), &y, &Array2::zeros((3, 5)), &b, true).is_err());
    let mut bad = y.clone();
    bad[3] = 3;
    let e = softmax_pass(x.view(), &bad, &w, &b, true).unwrap_err();
    assert!(e.to_string().contains("label 3"), "{e}");
}
