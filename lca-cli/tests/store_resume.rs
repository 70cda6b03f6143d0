//! `lca store create` streams a transformer extraction to disk shard by
//! shard. Killed at any moment (SIGKILL), it leaves finished shards and a
//! record of them, never a manifest over missing rows; run again, it keeps
//! those shards and writes the same store an uninterrupted run writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;
use common::{lca_command, repo, succeed};

/// Words with their Brown tags, drawn from to make a corpus of any size.
const WORDS: &[(&str, &str)] = &[
    ("the", "at"),
    ("dog", "nn"),
    ("runs", "vbz"),
    ("quickly", "rb"),
    ("over", "in"),
    ("a", "at"),
    ("lazy", "jj"),
    ("cat", "nn"),
    ("sat", "vbd"),
    ("books", "nns"),
    ("and", "cc"),
    ("read", "vbd"),
    ("unbelievable", "jj"),
    (".", "."),
];

/// A Brown-format corpus of `sentences` sentences of 5 to 24 words.
fn write_corpus(dir: &Path, sentences: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..sentences {
        let len = 5 + next(20);
        let words: Vec<String> = (0..len)
            .map(|_| {
                let (w, t) = WORDS[next(WORDS.len())];
                format!("{w}/{t}")
            })
            .collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    std::fs::write(dir.join("ca01"), text).unwrap();
}

/// A recipe whose one source extracts the tiny BERT's activations of the
/// corpus in `dir/brown`.
fn write_recipe(dir: &Path, seed: u32) -> PathBuf {
    let path = dir.join(format!("recipe-{seed}.toml"));
    let text = format!(
        "[run]\nseed = {seed}\n\
         [source.words]\ntype = \"transformer\"\nmodel = {:?}\ncorpus = {:?}\n\
         task = \"universal_pos\"\ndev = 0.1\ntest = 0.1\n\
         [probe.p]\ntype = \"elastic_net\"\nsource = \"words\"\n\
         [ranker.w]\ntype = \"probe_weights\"\nprobe = \"p\"\n",
        repo("plugins/transformer/tests/fixtures/tiny-bert")
            .display()
            .to_string(),
        dir.join("brown").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn create(recipe: &Path, out: &Path) -> Command {
    create_with(recipe, out, "1")
}

fn create_with(recipe: &Path, out: &Path, threads: &str) -> Command {
    let mut command = lca_command();
    command
        .args([
            "store",
            "create",
            "--quiet",
            "--threads",
            threads,
            "--shard-mib",
            "1",
        ])
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn manifest(store: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(store.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_store_creation_killed_at_any_moment_resumes_into_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("brown"), 2_400);
    let recipe = write_recipe(dir.path(), 5);

    let reference = dir.path().join("reference");
    let started = Instant::now();
    succeed(&mut create(&recipe, &reference));
    let duration = started.elapsed();
    let expected = manifest(&reference);
    let shards = expected["shards"].as_array().unwrap().len();
    assert!(shards >= 6, "the corpus fills several shards ({shards})");
    assert!(!reference.join("progress.json").exists());

    // Kill attempts at moments spread over an uninterrupted run's length;
    // each goes on from what the previous ones left.
    let store = dir.path().join("killed");
    let mut resumed_from_shards = false;
    for k in 0..10u32 {
        let mut child = create(&recipe, &store).spawn().unwrap();
        std::thread::sleep(duration.mul_f64(f64::from(2 * k + 1) / 20.0));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        if store.join("manifest.json").exists() {
            // Finished before the kill, or killed after the manifest: the
            // store is whole either way.
            break;
        }
        assert!(
            !output.status.success(),
            "attempt {k} finished without a manifest"
        );
        if let Ok(bytes) = std::fs::read(store.join("progress.json")) {
            let record: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("attempt {k}: progress.json is whole JSON: {e}"));
            for shard in record["shards"].as_array().unwrap() {
                let file = store.join(shard["file"].as_str().unwrap());
                assert_eq!(
                    std::fs::metadata(&file).map(|m| m.len()).ok(),
                    shard["bytes"].as_u64(),
                    "attempt {k}: {} is recorded but not whole",
                    file.display()
                );
                resumed_from_shards = true;
            }
        }
    }
    if !store.join("manifest.json").exists() {
        let last = succeed(&mut create(&recipe, &store));
        let said = String::from_utf8_lossy(&last.stdout);
        assert!(
            !resumed_from_shards || said.contains("kept the first"),
            "the last attempt kept the recorded shards: {said}"
        );
        assert!(!store.join("progress.json").exists());
    }
    assert!(
        resumed_from_shards,
        "no kill fell after the first shard (an uninterrupted run took {duration:?})"
    );
    assert_eq!(
        manifest(&store),
        expected,
        "the resumed store is the uninterrupted one, shard hashes included"
    );
    // Shards stream to disk while they fill; what a killed attempt left of
    // one is removed by the next.
    let partial: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(partial.is_empty(), "partial shards left: {partial:?}");
    assert_eq!(
        std::fs::read(store.join("rows.json")).unwrap(),
        std::fs::read(reference.join("rows.json")).unwrap()
    );
    succeed(
        lca_command()
            .args(["store", "verify", "--quiet"])
            .arg(&store),
    );
}

/// A record left by a different extraction (another seed gives another
/// split, so other rows) is not trusted: its shards are written again.
#[test]
fn an_interrupted_store_of_other_settings_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("brown"), 2_400);
    let (one, two) = (write_recipe(dir.path(), 1), write_recipe(dir.path(), 2));
    let reference = dir.path().join("reference");
    let started = Instant::now();
    succeed(&mut create(&two, &reference));
    let duration = started.elapsed();
    // Seed 1 killed once it has a shard or more on record.
    let store = dir.path().join("store");
    let mut recorded = false;
    for k in 0..12u32 {
        let _ = std::fs::remove_dir_all(&store);
        let mut child = create(&one, &store).spawn().unwrap();
        std::thread::sleep(duration.mul_f64(0.35 + f64::from(k) * 0.05));
        let _ = child.kill();
        let done = child.wait().unwrap().success();
        recorded = !done
            && std::fs::read(store.join("progress.json")).is_ok_and(|bytes| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .is_ok_and(|r| !r["shards"].as_array().unwrap().is_empty())
            });
        if recorded {
            break;
        }
    }
    assert!(
        recorded,
        "no attempt of seed 1 was killed after its first shard"
    );
    let last = succeed(&mut create(&two, &store));
    assert!(
        !String::from_utf8_lossy(&last.stdout).contains("kept the first"),
        "nothing of the other extraction was kept"
    );
    assert_eq!(manifest(&store), manifest(&reference));
}

/// A store written in parts by separate processes, in any order and with
/// different thread counts, then joined, is the store one process writes:
/// the same manifest (shard hashes included) and row metadata. A part
/// that holds no shard is allowed; a missing part or one of another
/// extraction stops the join with one paragraph, and nothing is written.
#[test]
fn a_store_written_in_parts_and_joined_is_the_store_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(&dir.path().join("brown"), 1_200);
    let recipe = write_recipe(dir.path(), 5);
    let reference = dir.path().join("reference");
    succeed(&mut create(&recipe, &reference));
    let expected = manifest(&reference);
    let shards = expected["shards"].as_array().unwrap().len();
    assert!(shards >= 3, "the corpus fills several shards ({shards})");

    // More parts than shards: the last part holds none.
    let parts = shards + 1;
    let store = dir.path().join("parts");
    let part = |k: usize, recipe: &Path, threads: &str| {
        let mut command = create_with(recipe, &store, threads);
        command.args(["--part", &format!("{k}/{parts}")]);
        command
    };
    let join = || {
        let mut command = lca_command();
        command.args(["store", "join"]).arg(&store);
        command
    };
    for k in (1..parts).rev() {
        let threads = if k % 2 == 0 { "1" } else { "2" };
        let output = succeed(&mut part(k, &recipe, threads));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(&format!("part {k}/{parts}")),
            "part {k} says what it wrote"
        );
    }
    // Part 0 is missing: the join names it and writes nothing.
    let output = join().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains(&format!("0/{parts}")), "{said}");
    assert!(!store.join("manifest.json").exists());
    let output = lca_command()
        .args(["store", "info"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("lca store join"));

    // A part 0 of another seed (another split, so other rows) disagrees.
    let other = write_recipe(dir.path(), 6);
    succeed(&mut part(0, &other, "1"));
    let output = join().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("disagrees with"), "{said}");
    assert!(!store.join("manifest.json").exists());

    // Part 0 written again from the right recipe: the store joins.
    std::fs::remove_file(store.join(format!("part-0-of-{parts}.json"))).unwrap();
    succeed(&mut part(0, &recipe, "2"));
    succeed(&mut join());
    assert_eq!(
        manifest(&store),
        expected,
        "the joined store is the whole one"
    );
    assert_eq!(
        std::fs::read(store.join("rows.json")).unwrap(),
        std::fs::read(reference.join("rows.json")).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("part-") || name.starts_with("progress"))
        .collect();
    assert!(leftovers.is_empty(), "records left: {leftovers:?}");
    succeed(
        lca_command()
            .args(["store", "verify", "--quiet"])
            .arg(&store),
    );
    // Joined once: a second join changes nothing.
    let output = join().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already holds a store"));

    // The Slurm recipe, run locally: three array tasks and the join.
    let slurm = dir.path().join("slurm");
    let script = |args: &[&std::ffi::OsStr]| {
        let mut command = Command::new("bash");
        command
            .arg(repo("scripts/slurm/create-store.sh"))
            .args(args)
            .env("LCA", common::lca_exe())
            .env("LCA_PLUGIN_PATH", common::deps_dir());
        command
    };
    succeed(&mut script(&[
        "--local".as_ref(),
        recipe.as_os_str(),
        slurm.as_os_str(),
        "3".as_ref(),
        "--shard-mib".as_ref(),
        "1".as_ref(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]));
    assert_eq!(
        manifest(&slurm),
        expected,
        "the Slurm recipe's store is the whole one"
    );
    let output = script(&["--local".as_ref(), recipe.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: create-store.sh"));
}
