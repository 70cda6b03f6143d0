//! Mutation fuzzing for file readers: valid inputs are mutated at random
//! (bytes flipped, inserted, deleted, duplicated, cut off, or replaced by
//! troublesome tokens) and fed to a reader, which must return a value or an
//! error, never panic.
//!
//! Each target runs for `LCA_FUZZ_SECONDS` seconds (default 1; CI sets 30)
//! from a seed derived from its name, so a run is reproducible for a given
//! number of iterations. An input that panics is saved under
//! `target/fuzz-crashes/` (or `$LCA_FUZZ_CRASHES`) and the test fails naming
//! it. `lca-core` fuzzes its own readers with it, and plugin crates theirs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lca_core::rng::Rng;

/// Tokens that often break parsers.
pub const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\t",
    b"  ",
    b"[",
    b"]",
    b"=",
    b"\"",
    b"'",
    b"{",
    b"}",
    b",",
    b":",
    b"NaN",
    b"-1",
    b"1e309",
    b"-0",
    b"0",
    b"18446744073709551616",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b"[source.x]\n",
    b"type = ",
    b"\"synthetic\"",
    b"layers",
    b"/",
    b"..",
];

/// The time each target runs for: `LCA_FUZZ_SECONDS`, default 1 s.
pub fn budget() -> Duration {
    let seconds: f64 = std::env::var("LCA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(seconds)
}

/// One to four random mutations of `input`.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        let at = if len == 0 {
            0
        } else {
            rng.below(len as u64) as usize
        };
        match rng.below(7) {
            0 if len > 0 => out[at] ^= 1 << rng.below(8),
            1 => out.insert(at, rng.below(256) as u8),
            2 if len > 0 => {
                let end = (at + 1 + rng.below(16) as usize).min(len);
                out.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(32) as usize).min(len);
                let piece = out[at..end].to_vec();
                let to = rng.below(len as u64 + 1) as usize;
                out.splice(to..to, piece);
            }
            4 => out.truncate(at),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                let end = (at + rng.below(4) as usize).min(len);
                out.splice(at..end, token.iter().copied());
            }
        }
    }
    out
}

/// Mutates `seeds` for the time budget, writing each input to `file` (in a
/// scratch directory) and calling `read`; fails on the first panic. An input
/// that takes longer than `LCA_FUZZ_HANG_SECONDS` (default 30) is a hang: it
/// is saved like a panic and the test process ends, since the stuck call
/// cannot be interrupted.
pub fn fuzz(target: &str, seeds: &[Vec<u8>], file: &str, read: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    let mut rng = Rng::new(lca_core::rng::stable_hash(target));
    let started = Instant::now();
    let mut iterations = 0u64;
    let current: Current = Arc::default();
    let watchdog = spawn_watchdog(target, file, current.clone());
    while started.elapsed() < budget() || iterations < 50 {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let input = mutate(&mut rng, seed);
        std::fs::write(&path, &input).unwrap();
        *lock(&current) = Some((Instant::now(), iterations, input));
        let outcome = catch_unwind(AssertUnwindSafe(|| read(&path)));
        let (_, _, input) = lock(&current).take().expect("set above");
        if outcome.is_err() {
            let saved = save(target, iterations, file, &input);
            panic!(
                "{target}: input {iterations} panicked; saved as {}",
                saved.display()
            );
        }
        iterations += 1;
    }
    drop(watchdog);
    eprintln!("{target}: {iterations} inputs, no panic");
}

type Current = Arc<Mutex<Option<(Instant, u64, Vec<u8>)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn save(target: &str, iteration: u64, file: &str, input: &[u8]) -> PathBuf {
    let crashes = crash_dir();
    std::fs::create_dir_all(&crashes).unwrap();
    let saved = crashes.join(format!("{target}-{iteration}-{file}"));
    std::fs::write(&saved, input).unwrap();
    saved
}

/// Ends the watchdog thread when dropped.
struct Watchdog(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn spawn_watchdog(target: &str, file: &str, current: Current) -> Watchdog {
    let limit = std::env::var("LCA_FUZZ_HANG_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs_f64);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (target, file, flag) = (target.to_string(), file.to_string(), done.clone());
    std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if let Some((since, iteration, input)) = lock(&current).as_ref()
                && since.elapsed() > limit
            {
                let saved = save(&target, *iteration, &file, input);
                eprintln!(
                    "{target}: input {iteration} hung for over {:.0} s; saved as {}",
                    limit.as_secs_f64(),
                    saved.display()
                );
                std::process::exit(101);
            }
        }
    });
    Watchdog(done)
}

/// Where panicking inputs are saved.
fn crash_dir() -> PathBuf {
    std::env::var_os("LCA_FUZZ_CRASHES")
        .map(PathBuf::from)
        .or_else(|| {
            // The test binary lives in target/<profile>/deps.
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.join("fuzz-crashes"))
        })
        .unwrap_or_else(|| PathBuf::from("fuzz-crashes"))
}
