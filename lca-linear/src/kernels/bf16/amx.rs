//! The product on Intel's AMX tile unit (Sapphire Rapids on): one
//! `tdpbf16ps` multiplies a 16 × 32 bfloat16 tile of rows by a 32 × 16 one
//! of weights into a 16 × 16 tile of `f32` sums, 8,192 multiply-adds, where
//! AVX512-BF16 does 32 per instruction.
//!
//! Tiles. Eight tile registers, each 16 rows of 64 bytes: four hold a
//! 32-row × 32-output block of sums, two hold 16 rows of `x` each (16
//! input pairs per row) and two the weights of 16 outputs each (16 input
//! pairs, one row per pair). Both operands are laid out tile-major first,
//! 1 KiB per tile, so a tile load reads 16 consecutive cache lines (loads
//! 256 bytes apart straight from the weights' panels ran a fifth slower):
//! a task's rows once, and the weights of each 32 outputs once per task,
//! reused by all its rows. A partial last block of input pairs is
//! zero-padded.
//!
//! Order. Each sum runs over the input pairs a block of 16 at a time in
//! ascending order, whatever the task or thread, so results do not depend
//! on the thread count. Inside a block the hardware's order applies, and
//! like AVX512-BF16 it treats subnormal inputs as zero; results stay within
//! the same bound of the exact sums (see the tests).
//!
//! The Linux kernel hands a process the tile registers' state only on
//! request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); [`available`] makes the
//! request once and reports whether it was granted.

use std::arch::asm;
use std::sync::OnceLock;

use super::{PANEL, PackedWeights, pack_row};

/// Rows per tile, and 32-bit words (input pairs, or outputs) per tile row.
const TILE: usize = 16;

/// Whether this CPU has AMX with bfloat16 and the kernel lets this process
/// use it (asked once per process).
pub(super) fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| {
        let features = std::arch::x86_64::__cpuid_count(7, 0);
        let amx_bf16 = features.edx & (1 << 22) != 0;
        let amx_tile = features.edx & (1 << 24) != 0;
        // The task is compiled for AVX-512F and BW too (every CPU with AMX
        // has them, but a hypervisor may hide them).
        let vectors = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw");
        amx_bf16 && amx_tile && vectors && request_tile_state()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true when
/// granted. A kernel too old to know the request refuses it.
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;
    let result: i64;
    // SAFETY: a system call that only changes this process's permissions;
    // it clobbers rcx and r11, as declared.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => result,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    result == 0
}

/// The tile configuration: palette 1, all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn full_tiles() -> Config {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for tile in 0..8 {
            bytes[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&64u16.to_le_bytes());
            bytes[48 + tile] = TILE as u8;
        }
        Config(bytes)
    }
}

/// One task: rows `x` times every output into `out`, on the tile unit.
///
/// # Safety
/// [`available`] must have returned true (it checks AVX-512F and BW too,
/// which the rounding of the rows is compiled for).
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn task(x: &[f32], weights: &PackedWeights, out: &mut [f32]) {
    let (inputs, outputs, pairs) = (weights.inputs, weights.outputs, weights.pairs());
    let rows = x.len() / inputs;
    if rows == 0 || outputs == 0 {
        return;
    }
    let blocks = pairs.div_ceil(TILE);
    let stride = blocks * TILE;
    // The rows in bfloat16 pairs, zero-padded to whole tiles both ways.
    let padded_rows = rows.next_multiple_of(2 * TILE);
    let mut a = vec![0u32; padded_rows * stride];
    let mut packed = vec![0u32; stride];
    for (r, row) in x.chunks_exact(inputs).enumerate() {
        pack_row(row, &mut packed[..pairs]);
        // Tile-major: tile (r / 16, block) is 1 KiB of consecutive words,
        // so a tile load reads 16 consecutive cache lines.
        let (tile_row, within) = (r / TILE, r % TILE);
        for (block, words) in packed.chunks_exact(TILE).enumerate() {
            let at = ((tile_row * blocks + block) * TILE + within) * TILE;
            a[at..at + TILE].copy_from_slice(words);
        }
    }
    let config = Config::full_tiles();
    let mut spill = Spill([0.0; TILE * TILE]);
    // SAFETY (every block below): the tile unit is available (this
    // function's contract) and configured here; each load reads 16 rows of
    // 64 bytes at a stride of 64 bytes inside `a` or `b`, which hold whole
    // tiles; each store writes 16 rows of 64 bytes inside `out` (only for
    // tiles wholly inside it) or into `spill`.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        let a_stride = TILE * 4;
        // The weights of the 32 outputs in hand, tile-major (two 1 KiB
        // tiles per block of 16 pairs, a partial last block zero-padded),
        // so every weight tile load reads 16 consecutive cache lines, as
        // the row tiles do; copied once per 32 outputs and reused by every
        // block of rows.
        let mut b = vec![0u32; blocks * 2 * TILE * TILE];
        for first_output in (0..outputs).step_by(2 * TILE) {
            let (panel, lane) = (first_output / PANEL, first_output % PANEL);
            let panel_words = &weights.words[panel * pairs * PANEL..];
            for (block, tiles) in b.chunks_exact_mut(2 * TILE * TILE).enumerate() {
                let (low, high) = tiles.split_at_mut(TILE * TILE);
                let first_pair = block * TILE;
                let count = TILE.min(pairs - first_pair);
                // Rows past the last pair stay zero from the allocation
                // (every 32 outputs have the same pairs).
                for p in 0..count {
                    let at = (first_pair + p) * PANEL + lane;
                    low[p * TILE..(p + 1) * TILE].copy_from_slice(&panel_words[at..at + TILE]);
                    high[p * TILE..(p + 1) * TILE]
                        .copy_from_slice(&panel_words[at + TILE..at + 2 * TILE]);
                }
            }
            for first_row in (0..rows).step_by(2 * TILE) {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
                for block in 0..blocks {
                    let a0 = a
                        .as_ptr()
                        .add((first_row / TILE * blocks + block) * TILE * TILE);
                    let a1 = a0.add(blocks * TILE * TILE);
                    let b0 = b.as_ptr().add(block * 2 * TILE * TILE);
                    let b1 = b0.add(TILE * TILE);
                    let b_stride = TILE * 4;
                    asm!(
                        "tileloadd tmm4, [{a0} + {sa}*1]",
                        "tileloadd tmm5, [{a1} + {sa}*1]",
                        "tileloadd tmm6, [{b0} + {sb}*1]",
                        "tileloadd tmm7, [{b1} + {sb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0,
                        a1 = in(reg) a1,
                        b0 = in(reg) b0,
                        b1 = in(reg) b1,
                        sa = in(reg) a_stride,
                        sb = in(reg) b_stride,
                        options(nostack, readonly)
                    );
                }
                store::<0>(out, rows, outputs, first_row, first_output, &mut spill);
                store::<1>(
                    out,
                    rows,
                    outputs,
                    first_row,
                    first_output + TILE,
                    &mut spill,
                );
                store::<2>(
                    out,
                    rows,
                    outputs,
                    first_row + TILE,
                    first_output,
                    &mut spill,
                );
                store::<3>(
                    out,
                    rows,
                    outputs,
                    first_row + TILE,
                    first_output + TILE,
                    &mut spill,
                );
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// One tile's worth of sums, for tiles that stick out of `out`.
#[repr(C, align(64))]
struct Spill([f32; TILE * TILE]);

/// Stores sum tile `T` (rows from `first_row`, outputs from
/// `first_output`): straight into `out` when wholly inside it, else
/// through `spill`, keeping only what lies inside.
///
/// # Safety
/// The tile unit is configured and tile `T` holds sums.
#[inline(always)]
unsafe fn store<const T: usize>(
    out: &mut [f32],
    rows: usize,
    outputs: usize,
    first_row: usize,
    first_output: usize,
    spill: &mut Spill,
) {
    if first_row >= rows || first_output >= outputs {
        return;
    }
    let whole = first_row + TILE <= rows && first_output + TILE <= outputs;
    let (target, stride) = if whole {
        (
            out[first_row * outputs + first_output..].as_mut_ptr(),
            outputs * 4,
        )
    } else {
        (spill.0.as_mut_ptr(), TILE * 4)
    };
    // SAFETY: 16 rows of 64 bytes at `stride` lie inside `out` for a whole
    // tile, and inside `spill` otherwise.
    unsafe {
        match T {
            0 => {
                asm!("tilestored [{t} + {s}*1], tmm0", t = in(reg) target, s = in(reg) stride, options(nostack));
            }
            1 => {
                asm!("tilestored [{t} + {s}*1], tmm1", t = in(reg) target, s = in(reg) stride, options(nostack));
            }
            2 => {
                asm!("tilestored [{t} + {s}*1], tmm2", t = in(reg) target, s = in(reg) stride, options(nostack));
            }
            _ => {
                asm!("tilestored [{t} + {s}*1], tmm3", t = in(reg) target, s = in(reg) stride, options(nostack));
            }
        }
    }
    if !whole {
        let valid_rows = (rows - first_row).min(TILE);
        let valid = (outputs - first_output).min(TILE);
        for (r, sums) in spill.0.chunks_exact(TILE).take(valid_rows).enumerate() {
            let at = (first_row + r) * outputs + first_output;
            out[at..at + valid].copy_from_slice(&sums[..valid]);
        }
    }
}
