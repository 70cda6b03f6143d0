//! `lca store` from the command line: a store-backed run gives the results
//! of the in-memory one, imports and exports round-trip, and bad input is
//! refused with one paragraph and nothing written.

use std::path::{Path, PathBuf};

mod common;
use common::{lca_command, npy, read_results, repo, succeed};

fn fail(command: &mut std::process::Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{command:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// The parts of `results.json` that a source's backing must not change.
fn findings(out: &Path) -> String {
    let (results, _) = read_results(&out.join("results.json")).expect("results.json");
    let keep = ["probes", "rankings", "evaluations"].map(|k| results[k].clone());
    serde_json::to_string_pretty(&keep).unwrap()
}

/// The planted recipe with its source swapped for `source`.
fn with_source(recipe: &str, source: &str) -> String {
    let start = recipe.find("[source.planted]").expect("a planted source");
    let end = start + recipe[start..].find("\n\n").expect("a blank line after it");
    format!("{}{source}{}", &recipe[..start], &recipe[end..]).replace("out = ", "# out = ")
}

#[test]
fn a_store_backed_run_gives_the_in_memory_results_at_1_and_2_threads() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = repo("examples/recipes/lca-synthetic.toml");
    let recipe = std::fs::read_to_string(&recipe_path).unwrap();
    let store = dir.path().join("planted-store");
    // Small shards, so that the run reads across several.
    succeed(
        lca_command()
            .args(["store", "create", "--quiet", "--shard-mib", "1", "--out"])
            .arg(&store)
            .arg(&recipe_path),
    );
    let info = succeed(lca_command().args(["store", "info"]).arg(&store));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("6000 rows × 300 neurons") && info.contains("8 shard(s)"),
        "{info}"
    );
    let stored = dir.path().join("stored.toml");
    std::fs::write(
        &stored,
        with_source(
            &recipe,
            &format!(
                "[source.planted]\ntype = \"store\"\npath = {:?}\nverify = true",
                store.display()
            ),
        ),
    )
    .unwrap();
    let in_memory = dir.path().join("in-memory.toml");
    std::fs::write(&in_memory, recipe.replace("out = ", "# out = ")).unwrap();

    // The same data in f16: used in place (16-bit values converted a block
    // at a time) and, from shards not aligned to pages, read into memory as
    // f32 at once. The two runs must agree.
    let f16_store = dir.path().join("f16-store");
    succeed(
        lca_command()
            .args([
                "store",
                "create",
                "--quiet",
                "--dtype",
                "f16",
                "--shard-mib",
                "1",
                "--out",
            ])
            .arg(&f16_store)
            .arg(&recipe_path),
    );
    let opened = lca_store::Store::open(&f16_store).unwrap();
    assert!(opened.manifest().shards.len() > 1);
    assert!(
        opened.matrix().unwrap().half_bits().is_some(),
        "f16 in place"
    );
    let f16_loaded = dir.path().join("f16-loaded");
    lca_store::write_dataset(
        &opened.dataset("planted", None).unwrap(),
        &f16_loaded,
        lca_store::Dtype::F16,
        1000,
        &opened.manifest().default_task,
        |_| {},
    )
    .unwrap();
    let loaded = lca_store::Store::open(&f16_loaded)
        .unwrap()
        .matrix()
        .unwrap();
    assert!(
        loaded.half_bits().is_none() && loaded.as_slice().is_some(),
        "f16 read whole"
    );
    let store_recipe = |name: &str, path: &Path| {
        let file = dir.path().join(name);
        let source = format!(
            "[source.planted]\ntype = \"store\"\npath = {:?}",
            path.display()
        );
        std::fs::write(&file, with_source(&recipe, &source)).unwrap();
        file
    };
    let f16_in_place = store_recipe("f16-in-place.toml", &f16_store);
    let f16_whole = store_recipe("f16-whole.toml", &f16_loaded);

    for threads in ["1", "2"] {
        let run = |recipe: &Path, name: &str| {
            let out = dir.path().join(format!("{name}-{threads}"));
            succeed(
                lca_command()
                    .args(["run", "--quiet", "--threads", threads, "--out"])
                    .arg(&out)
                    .arg(recipe),
            );
            findings(&out)
        };
        let expected = run(&in_memory, "memory");
        let found = run(&stored, "store");
        assert!(expected.contains("\"accuracy\""), "the run has evaluations");
        assert!(
            expected == found,
            "{threads} thread(s): the store-backed run differs"
        );
        let whole = run(&f16_whole, "f16-whole");
        assert!(whole.contains("\"accuracy\""), "the run has evaluations");
        assert!(
            run(&f16_in_place, "f16-in-place") == whole,
            "{threads} thread(s): the f16 store used in place differs from it read whole"
        );
    }
}

/// The results of `lca run` on a recipe of the `store` source at `store`
/// and `rankers` (TOML tables), run in `dir`.
fn run_rankers(dir: &Path, store: &Path, rankers: &str) -> serde_json::Value {
    let recipe = dir.join("rank.toml");
    let source = format!(
        "[source.s]\ntype = \"store\"\npath = {:?}\n\n",
        store.display()
    );
    std::fs::write(&recipe, source + rankers).unwrap();
    let out = dir.join("run");
    succeed(
        lca_command()
            .args(["run", "--quiet", "--out"])
            .arg(&out)
            .arg(&recipe),
    );
    read_results(&out.join("results.json")).unwrap().0
}

/// A planted store of 6,000 tokens × 120 neurons, 5 classes, in 3 shards
/// of 1 MiB (4,800 training rows: two shards and part of the third).
fn small_store(dir: &Path, seed: u64) -> PathBuf {
    let recipe = format!(
        "[run]\nseed = {seed}\n\n[source.small]\ntype = \"synthetic\"\ntokens = 6000\n\
         neurons = 120\nlayers = 2\nclasses = 5\nper_class = 2\n"
    );
    common::create_store(dir, &recipe, &["--shard-mib", "1"]).0
}

/// `lca store stats` of `shards` of `store` with `extra` options, into
/// `dir/name`.
fn store_stats(dir: &Path, store: &Path, shards: &str, extra: &[&str], name: &str) -> PathBuf {
    let file = dir.join(name);
    succeed(
        lca_command()
            .args(["store", "stats", "--shards", shards, "--out"])
            .arg(&file)
            .args(extra)
            .arg(store),
    );
    file
}

/// `lca store merge-stats` of `files`, in that order, into `dir/name`.
fn merge_stats(dir: &Path, files: &[&PathBuf], name: &str) -> PathBuf {
    let out = dir.join(name);
    succeed(
        lca_command()
            .args(["store", "merge-stats"])
            .args(files)
            .arg("--out")
            .arg(&out),
    );
    out
}

/// The ranking file `lca store rank --method method` writes from `stats`.
fn store_rank(dir: &Path, stats: &Path, method: &str, extra: &[&str]) -> serde_json::Value {
    let ranked = dir.join(format!("{method}.json"));
    succeed(
        lca_command()
            .args(["store", "rank", "--method", method, "--out"])
            .arg(&ranked)
            .args(extra)
            .arg(stats),
    );
    serde_json::from_str(&std::fs::read_to_string(&ranked).unwrap()).unwrap()
}

/// The `order` of ranking `name` in a run's results.
fn ranking_order(results: &serde_json::Value, name: &str) -> Vec<u64> {
    results["rankings"][name]["ranking"]["order"]
        .as_array()
        .unwrap_or_else(|| panic!("ranking {name} in {results}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn statistics_of_shard_ranges_merge_into_the_rankers_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    succeed(
        lca_command()
            .args(["store", "create", "--quiet", "--shard-mib", "1", "--out"])
            .arg(&store)
            .arg(repo("examples/recipes/lca-synthetic.toml")),
    );
    // The rankers, in memory on the store's data.
    let results = run_rankers(
        dir.path(),
        &store,
        "[ranker.corr]\ntype = \"correlation\"\n\n[ranker.probeless]\ntype = \"probeless\"\n\n\
         [ranker.iou]\ntype = \"iou\"\nquantile = 0.02\ndetector_iou = 0.01\n",
    );

    // Statistics of three shard ranges, merged in two groupings; the first
    // IoU pass (top values) rides along, and its merge gives the thresholds
    // of the second (mask counts).
    let part = |range: &str, iou: &[&std::ffi::OsStr]| {
        let file = dir.path().join(format!("stats-{range}-{}.json", iou.len()));
        succeed(
            lca_command()
                .args(["store", "stats", "--shards", range, "--out"])
                .arg(&file)
                .args(iou)
                .arg(&store),
        );
        file
    };
    let top_pass = ["--iou-quantile".as_ref(), "0.02".as_ref()];
    let (a, b, c) = (
        part("0..3", &top_pass),
        part("3..5", &top_pass),
        part("5..7", &top_pass),
    );
    let merge = |parts: [&std::path::PathBuf; 2], name: &str| {
        let out = dir.path().join(name);
        succeed(
            lca_command()
                .args(["store", "merge-stats"])
                .args(parts)
                .arg("--out")
                .arg(&out),
        );
        out
    };
    let ab = merge([&a, &b], "ab.json");
    let left = merge([&ab, &c], "left.json");
    let bc = merge([&b, &c], "bc.json");
    let right = merge([&a, &bc], "right.json");
    let json = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert_eq!(
        json(&left)["iou_top"],
        json(&right)["iou_top"],
        "top values merge exactly in any grouping"
    );
    // The second IoU pass, at the thresholds of all shards' top values.
    let mask_pass = ["--iou-thresholds".as_ref(), right.as_os_str()];
    let (a2, b2, c2) = (
        part("0..3", &mask_pass),
        part("3..5", &mask_pass),
        part("5..7", &mask_pass),
    );
    let masks_left = merge([&merge([&a2, &b2], "ab2.json"), &c2], "left2.json");
    let masks_right = merge([&a2, &merge([&b2, &c2], "bc2.json")], "right2.json");
    for merged in [&masks_left, &masks_right] {
        let ranked = dir.path().join("iou.json");
        succeed(
            lca_command()
                .args(["store", "rank", "--method", "iou", "--detector-iou", "0.01"])
                .arg("--out")
                .arg(&ranked)
                .arg(merged),
        );
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ranked).unwrap()).unwrap();
        let in_memory = &results["rankings"]["iou"]["ranking"];
        assert_eq!(file["ranking"]["order"], in_memory["order"]);
        assert_eq!(file["ranking"]["scores"], in_memory["scores"]);
        assert_eq!(file["ranking"]["per_class"], in_memory["per_class"]);
        assert_eq!(
            file["ranking"]["details"]["detectors_per_class"],
            in_memory["details"]["detectors_per_class"]
        );
    }
    // Thresholds from some shards only, and a ranking without mask counts,
    // are refused with what to do.
    let err = fail(
        lca_command()
            .args(["store", "stats", "--iou-thresholds"])
            .arg(&ab)
            .arg("--out")
            .arg(dir.path().join("x.json"))
            .arg(&store),
    );
    assert!(err.contains("cover 3840 of the 4800 rows"), "{err}");
    let err = fail(
        lca_command()
            .args(["store", "rank", "--method", "iou", "--out"])
            .arg(dir.path().join("x.json"))
            .arg(&left),
    );
    assert!(err.contains("--iou-thresholds"), "{err}");
    assert!(!dir.path().join("x.json").exists());

    for merged in [&left, &right] {
        for (method, ranker) in [("correlation", "corr"), ("probeless", "probeless")] {
            let ranked = dir.path().join(format!("{method}.json"));
            succeed(
                lca_command()
                    .args(["store", "rank", "--method", method, "--out"])
                    .arg(&ranked)
                    .arg(merged),
            );
            let file: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&ranked).unwrap()).unwrap();
            assert_eq!(file["rows"], 4800, "the training rows only");
            let order: Vec<u64> = file["ranking"]["order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(order, ranking_order(&results, ranker), "{method}");
        }
    }
    // A shard counted twice is refused.
    let err = fail(
        lca_command()
            .args(["store", "merge-stats"])
            .args([&ab, &b])
            .arg("--out")
            .arg(dir.path().join("x.json")),
    );
    assert!(err.contains("counted in both"), "{err}");
}

/// The Gaussian ranking from per-shard moments, merged in either order,
/// is the `gaussian` ranker's on the same store; candidates named by
/// `--gaussian-neurons` come first; partial or mismatched statistics are
/// refused with what to do.
#[test]
fn gaussian_moments_of_shard_ranges_merge_into_the_rankers_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path(), 3);
    let results = run_rankers(
        dir.path(),
        &store,
        "[ranker.gaussian]\ntype = \"gaussian\"\nneurons = 8\nmax_rows = 5000\n",
    );
    let in_memory = &results["rankings"]["gaussian"]["ranking"];

    let stats = |shards: &str, extra: &[&str], name: &str| {
        store_stats(dir.path(), &store, shards, extra, name)
    };
    let all = ["--gaussian-neurons", "all", "--gaussian-rows", "5000"];
    let (a, b) = (stats("0..1", &all, "a.json"), stats("1..3", &all, "b.json"));
    let rank = |file: &Path, extra: &[&str]| store_rank(dir.path(), file, "gaussian", extra);
    for (first, second, name) in [(&a, &b, "ab.json"), (&b, &a, "ba.json")] {
        let merged = merge_stats(dir.path(), &[first, second], name);
        let ranked = rank(&merged, &["--neurons", "8"]);
        assert_eq!(ranked["ranking"]["order"], in_memory["order"], "{name}");
        let bits = |v: &serde_json::Value| -> Vec<f64> {
            v["details"]["mi_bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_f64().unwrap())
                .collect()
        };
        let (ours, theirs) = (bits(&ranked["ranking"]), bits(in_memory));
        assert_eq!(ours.len(), 8);
        for (x, y) in ours.iter().zip(&theirs) {
            assert!((x - y).abs() < 1e-9, "{x} against {y}");
        }
    }

    // Candidates first, in the greedy order, then the other neurons by index.
    let some = stats("0..3", &["--gaussian-neurons", "20..50,7"], "some.json");
    let ranked = rank(&some, &["--neurons", "3", "--diagonal"]);
    let order: Vec<u64> = ranked["ranking"]["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut head = order[..31].to_vec();
    head.sort_unstable();
    let mut candidates: Vec<u64> = (20..50).collect();
    candidates.insert(0, 7);
    assert_eq!(head, candidates);
    let rest: Vec<u64> = (0..120).filter(|j| !candidates.contains(j)).collect();
    assert_eq!(order[31..], rest[..]);
    assert_eq!(ranked["ranking"]["details"]["candidates"], 31);
    assert_eq!(ranked["ranking"]["details"]["diagonal"], true);

    // Refusals, with nothing written.
    let x = dir.path().join("x.json");
    let refused = |command: &mut std::process::Command, expected: &str| {
        let err = fail(command);
        assert!(err.contains(expected), "{err}");
        assert!(!x.exists());
    };
    let rank_cmd = |file: &Path| {
        let mut command = lca_command();
        command
            .args(["store", "rank", "--method", "gaussian", "--out"])
            .arg(&x)
            .arg(file);
        command
    };
    refused(&mut rank_cmd(&a), "merge the statistics of every shard");
    let plain = stats("0..3", &[], "plain.json");
    refused(&mut rank_cmd(&plain), "--gaussian-neurons");
    let plain_b = stats("1..3", &[], "plain-b.json");
    refused(
        lca_command()
            .args(["store", "merge-stats"])
            .args([&a, &plain_b])
            .arg("--out")
            .arg(&x),
        "holds Gaussian moments (--gaussian-neurons) and the other does not",
    );
    let other_seed = stats(
        "1..3",
        &[
            "--gaussian-neurons",
            "all",
            "--gaussian-rows",
            "5000",
            "--seed",
            "9",
        ],
        "seed9.json",
    );
    refused(
        lca_command()
            .args(["store", "merge-stats"])
            .args([&a, &other_seed])
            .arg("--out")
            .arg(&x),
        "same `--seed`",
    );
    let stats_cmd = |neurons: &str| {
        let mut command = lca_command();
        command
            .args(["store", "stats", "--gaussian-neurons", neurons, "--out"])
            .arg(&x)
            .arg(&store);
        command
    };
    refused(&mut stats_cmd("3,120"), "neuron 120 is not in the store");
    refused(&mut stats_cmd("3,4,3"), "named twice");
    refused(&mut stats_cmd("3..x"), "is not a range");
}

/// NeuroX's average precision from per-shard histograms: with one bin per
/// distinct value it is the `iou_neurox` ranker's ranking, scores and
/// per-class rankings; with coarse bins the ranker's exact scores lie
/// within the bounds the ranking states.
#[test]
fn average_precision_histograms_merge_into_the_rankers_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path(), 4);
    let results = run_rankers(
        dir.path(),
        &store,
        "[ranker.ap]\ntype = \"iou_neurox\"\n\n\
         [ranker.ap_c2]\ntype = \"iou_neurox\"\npositive = \"C2\"\nthreshold = 0.2\n",
    );
    let stats = |shards: &str, extra: &[&str], name: &str| {
        store_stats(dir.path(), &store, shards, extra, name)
    };
    let merged = |extra: &[&str], name: &str| {
        let (a, b) = (
            stats("0..1", extra, &format!("a-{name}")),
            stats("1..3", extra, &format!("b-{name}")),
        );
        merge_stats(dir.path(), &[&b, &a], name)
    };
    let rank =
        |file: &Path, extra: &[&str]| store_rank(dir.path(), file, "average_precision", extra);
    let exact = merged(&["--ap-bits", "23"], "exact.json");
    let ranked = rank(&exact, &[]);
    let in_memory = &results["rankings"]["ap"]["ranking"];
    assert_eq!(ranked["ranking"]["order"], in_memory["order"]);
    assert_eq!(ranked["ranking"]["scores"], in_memory["scores"]);
    assert_eq!(ranked["ranking"]["per_class"], in_memory["per_class"]);
    assert_eq!(ranked["ranking"]["details"]["widest_bound"], 0.0);
    let exact_c2 = merged(
        &["--ap-bits", "23", "--ap-threshold", "0.2"],
        "exact-c2.json",
    );
    let ranked = rank(&exact_c2, &["--positive", "C2"]);
    let in_memory_c2 = &results["rankings"]["ap_c2"]["ranking"];
    assert_eq!(ranked["ranking"]["order"], in_memory_c2["order"]);
    assert_eq!(ranked["ranking"]["scores"], in_memory_c2["scores"]);

    // Four bins per octave: a certified interval around every exact score.
    let coarse = merged(&["--ap-bits", "2"], "coarse.json");
    let ranked = rank(&coarse, &[]);
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let details = &ranked["ranking"]["details"];
    let (lower, upper) = (
        numbers(&details["exact_at_least"]),
        numbers(&details["exact_at_most"]),
    );
    let exact_scores = numbers(&in_memory["scores"]);
    assert!(details["widest_bound"].as_f64().unwrap() > 0.0);
    for (j, score) in exact_scores.iter().enumerate() {
        assert!(
            lower[j] - 1e-12 <= *score && *score <= upper[j] + 1e-12,
            "neuron {j}: {} <= {score} <= {}",
            lower[j],
            upper[j]
        );
    }
    let planted = common::planted_neurons(&store);
    let order = numbers(&ranked["ranking"]["order"]);
    let hits = order[..planted.len()]
        .iter()
        .filter(|&&j| planted.contains(&(j as u64)))
        .count();
    assert!(hits * 10 >= planted.len() * 9, "{hits} of {planted:?}");

    // Refusals, with nothing written.
    let x = dir.path().join("x.json");
    let plain_b = stats("1..3", &[], "plain-b.json");
    let a = stats("0..1", &["--ap-bits", "23"], "a-again.json");
    let coarse_b = stats("1..3", &["--ap-bits", "2"], "b-coarse.json");
    for (other, expected) in [
        (
            &plain_b,
            "holds average-precision histograms (--ap-bits) and the other does not",
        ),
        (&coarse_b, "same `--ap-bits` and `--ap-threshold`"),
    ] {
        let err = fail(
            lca_command()
                .args(["store", "merge-stats"])
                .args([&a, other])
                .arg("--out")
                .arg(&x),
        );
        assert!(err.contains(expected), "{err}");
    }
    let err = fail(
        lca_command()
            .args([
                "store",
                "rank",
                "--method",
                "average_precision",
                "--positive",
                "C9",
                "--out",
            ])
            .arg(&x)
            .arg(&exact),
    );
    assert!(err.contains("C0, C1, C2, C3, C4"), "{err}");
    let err = fail(
        lca_command()
            .args(["store", "stats", "--ap-bits", "24", "--out"])
            .arg(&x)
            .arg(&store),
    );
    assert!(err.contains("24"), "{err}");
    assert!(!x.exists());
}

/// The Slurm recipe, run locally: four array tasks (one with no shard)
/// per pass, merged and ranked, give the rankings of one pass over the
/// whole store.
#[test]
fn the_slurm_array_recipe_run_locally_gives_the_rankings_of_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path(), 5);
    let out = dir.path().join("slurm");
    let options = "--gaussian-neurons 0..40 --gaussian-rows 5000 --ap-bits 23";
    let script = |args: &[&std::ffi::OsStr]| {
        let mut command = std::process::Command::new("bash");
        command
            .arg(repo("scripts/slurm/rank-store.sh"))
            .args(args)
            .env("LCA", common::lca_exe())
            .env("LCA_STATS_OPTIONS", options)
            .env("LCA_RANK_OPTIONS", "--neurons 5")
            .env("LCA_IOU_QUANTILE", "0.02");
        command
    };
    succeed(&mut script(&[
        "--local".as_ref(),
        store.as_os_str(),
        out.as_os_str(),
        "4".as_ref(),
    ]));
    // One pass over all shards, the same options.
    let words: Vec<&str> = options.split(' ').collect();
    let mut pass1 = words.clone();
    pass1.extend(["--iou-quantile", "0.02"]);
    let whole = store_stats(dir.path(), &store, "0..3", &pass1, "whole.json");
    let thresholds = ["--iou-thresholds", whole.to_str().unwrap()];
    let masks = store_stats(dir.path(), &store, "0..3", &thresholds, "masks.json");
    for method in [
        "correlation",
        "probeless",
        "gaussian",
        "average_precision",
        "iou",
    ] {
        let stats = if method == "iou" { &masks } else { &whole };
        let one_pass = store_rank(dir.path(), stats, method, &["--neurons", "5"]);
        let parts: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("{method}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            parts["ranking"]["order"], one_pass["ranking"]["order"],
            "{method}"
        );
        assert_eq!(parts["rows"], 4800, "{method}");
    }
    // A part with no shard still writes its (empty) statistics.
    let empty: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pass1-3.json")).unwrap()).unwrap();
    assert_eq!(empty["shards"].as_array().unwrap().len(), 0);
    // Bad arguments: exit 2 with the usage.
    let output = script(&["--local".as_ref(), store.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: rank-store.sh"));
}

/// A store four times larger than the address space `lca` may use: its
/// statistics, ranking and verification run under the limit, since shards
/// are mapped one at a time and read a block of rows at a time.
#[test]
fn statistics_of_a_store_four_times_larger_than_the_memory_limit() {
    const LIMIT: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (store, size) = common::create_store(
        dir.path(),
        "[run]\nseed = 1\n\n[source.big]\ntype = \"synthetic\"\ntokens = 90000\n\
         neurons = 800\nlayers = 4\nclasses = 40\nper_class = 2\n",
        &["--shard-mib", "8"],
    );
    assert!(size > 4 * LIMIT, "the store ({size} bytes) is 4× the limit");
    // `prlimit --as` caps the whole address space (every mapping, heap and
    // stack), a stricter bound than resident memory.
    let limited = |args: &[&str]| {
        let mut command = std::process::Command::new("prlimit");
        command
            .arg(format!("--as={LIMIT}"))
            .arg(common::lca_exe())
            .args(args)
            .env_remove("LCA_PLUGIN_PATH");
        succeed(&mut command)
    };
    let stats = dir.path().join("stats.json");
    let store_arg = store.to_str().unwrap();
    limited(&[
        "store",
        "stats",
        store_arg,
        "--out",
        stats.to_str().unwrap(),
    ]);
    limited(&["store", "verify", "--quiet", store_arg]);
    // Both IoU passes, the second at the first's thresholds.
    let top = dir.path().join("top.json");
    let masks = dir.path().join("masks.json");
    let (top_arg, masks_arg) = (top.to_str().unwrap(), masks.to_str().unwrap());
    limited(&[
        "store",
        "stats",
        store_arg,
        "--iou-quantile",
        "0.01",
        "--out",
        top_arg,
    ]);
    limited(&[
        "store",
        "stats",
        store_arg,
        "--iou-thresholds",
        top_arg,
        "--out",
        masks_arg,
    ]);
    let planted = common::planted_neurons(&store);
    // Gaussian moments of the planted neurons and as many others, the
    // candidates a correlation ranking's top would give.
    let candidates: Vec<String> = planted
        .iter()
        .copied()
        .chain(
            (0..800)
                .filter(|j| !planted.contains(j))
                .take(planted.len()),
        )
        .map(|j| j.to_string())
        .collect();
    let gaussian = dir.path().join("gaussian.json");
    limited(&[
        "store",
        "stats",
        store_arg,
        "--gaussian-neurons",
        &candidates.join(","),
        "--gaussian-rows",
        "1000",
        "--out",
        gaussian.to_str().unwrap(),
    ]);
    for (method, stats) in [
        ("correlation", &stats),
        ("iou", &masks),
        ("gaussian", &gaussian),
    ] {
        let ranked = dir.path().join("ranked.json");
        let output = limited(&[
            "store",
            "rank",
            "--method",
            method,
            "--neurons",
            "20",
            stats.to_str().unwrap(),
            "--out",
            ranked.to_str().unwrap(),
        ]);
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ranked).unwrap()).unwrap();
        assert_eq!(file["rows"], 72000);
        // The planted neurons lead the ranking (the Gaussian's greedy
        // selection, its first 20).
        let order = file["ranking"]["order"].as_array().unwrap();
        let top = if method == "gaussian" {
            20
        } else {
            planted.len()
        };
        let hits = order[..top]
            .iter()
            .filter(|j| planted.contains(&j.as_u64().unwrap()))
            .count();
        assert!(
            hits * 10 >= top * 9,
            "{method}: {hits} of the top {top} are planted: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// An `.npy` file four times larger than the address space `lca` may use
/// is imported: the `npy` source reads it a block of rows at a time into
/// the store's writer, and the store holds the file's values bit for bit.
#[test]
fn an_npy_file_four_times_larger_than_the_memory_limit_is_imported() {
    use std::io::Write as _;
    const LIMIT: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (72_000, 1_000);
    let value = |r: usize, c: usize| ((r * 31 + c * 17) % 1_009) as f32 / 13.0 - 38.0;
    let path = dir.path().join("acts.npy");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(&common::npy_header(rows, cols)).unwrap();
    let mut labels = String::new();
    for r in 0..rows {
        let row: Vec<u8> = (0..cols).flat_map(|c| value(r, c).to_le_bytes()).collect();
        file.write_all(&row).unwrap();
        labels.push_str(["NN\n", "VB\n", "DT\n", "JJ\n"][r % 4]);
        if r % 9 == 8 {
            labels.push('\n');
        }
    }
    file.into_inner().unwrap().sync_all().unwrap();
    std::fs::write(dir.path().join("labels.txt"), labels).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 4 * LIMIT, "the file ({size} bytes) is 4× the limit");

    // A copy of `lca` with no plugins beside it: mapping the plugin
    // libraries alone would take much of the limit, and `npy` is built in.
    let alone = dir.path().join("bin");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(common::lca_exe(), alone.join("lca")).unwrap();
    let store = dir.path().join("store");
    let mut command = std::process::Command::new("prlimit");
    command
        .arg(format!("--as={LIMIT}"))
        .arg(alone.join("lca"))
        // glibc reserves 64 MiB of address space per thread arena; with one
        // arena the limit counts memory in use, not reservations.
        .env("MALLOC_ARENA_MAX", "1")
        .current_dir(dir.path())
        .args([
            "store",
            "import",
            "acts.npy",
            "--labels",
            "labels.txt",
            "--quiet",
        ])
        .args(["--param", "shuffle=false", "--shard-mib", "4", "--out"])
        .arg(&store)
        .env_remove("LCA_PLUGIN_PATH");
    succeed(&mut command);

    // Without a shuffle the store's rows are the file's, in order.
    let read = lca_store::Store::open(&store).unwrap();
    assert_eq!(read.manifest().rows, rows);
    assert!(read.manifest().shards.len() > 50);
    for first in (0..rows).step_by(9_000) {
        let block = read.read_rows(first..first + 9_000).unwrap();
        for ((i, c), &v) in block.indexed_iter() {
            assert_eq!(
                v.to_bits(),
                value(first + i, c).to_bits(),
                "row {}, column {c}",
                first + i
            );
        }
    }
}

/// Exports `store` as the NeuroX file `file` and imports that (rows in
/// file order) as a store of `dtype` beside it; returns the new store.
fn export_and_import(store: &Path, file: &Path, dtype: &str) -> std::path::PathBuf {
    succeed(
        lca_command()
            .args(["store", "export"])
            .arg(store)
            .arg("--out")
            .arg(file),
    );
    let back = file.with_extension("store");
    let sibling = |suffix: &str| file.with_extension(suffix);
    succeed(
        lca_command()
            .args(["store", "import"])
            .arg(file)
            .arg("--corpus")
            .arg(sibling("sentences.txt"))
            .arg("--labels")
            .arg(sibling("labels.txt"))
            .args([
                "--param",
                "shuffle=false",
                "--quiet",
                "--dtype",
                dtype,
                "--out",
            ])
            .arg(&back),
    );
    back
}

/// The two stores hold the same values, words, sentences, neurons and
/// labels (by class name), and the second passes `verify`.
fn assert_same_store(a: &Path, b: &Path) {
    let (a, b) = (
        lca_store::Store::open(a).unwrap(),
        lca_store::Store::open(b).unwrap(),
    );
    let rows = a.manifest().rows;
    assert_eq!(b.manifest().rows, rows);
    assert_eq!(a.read_rows(0..rows).unwrap(), b.read_rows(0..rows).unwrap());
    assert_eq!(a.rows_meta().words, b.rows_meta().words);
    assert_eq!(a.rows_meta().sentence_starts, b.rows_meta().sentence_starts);
    assert_eq!(a.manifest().neurons, b.manifest().neurons);
    let names = |s: &lca_store::Store| {
        let m = s.manifest();
        let classes = &m.tasks[&m.default_task].classes;
        s.rows_meta().labels[&m.default_task]
            .iter()
            .map(|&l| classes[l as usize].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    succeed(
        lca_command()
            .args(["store", "verify", "--quiet"])
            .arg(b.dir()),
    );
}

#[test]
fn npy_import_neurox_export_and_json_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (40, 6);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 + 1e-4 * i as f32)
        .collect();
    std::fs::write(dir.path().join("acts.npy"), npy(rows, cols, &values)).unwrap();
    let mut labels = String::new();
    let mut words = String::new();
    for r in 0..rows {
        labels.push_str(["NN\n", "VB\n", "DT\n"][r % 3]);
        words.push_str(&format!("w{r}\n"));
        if r % 5 == 4 {
            labels.push('\n');
            words.push('\n');
        }
    }
    std::fs::write(dir.path().join("labels.txt"), &labels).unwrap();
    std::fs::write(dir.path().join("words.txt"), &words).unwrap();

    let import = |name: &str, more: &[&str]| {
        let out = dir.path().join(name);
        succeed(
            lca_command()
                .current_dir(dir.path())
                .args(["store", "import", "acts.npy", "--labels", "labels.txt"])
                .args(["--words", "words.txt", "--param", "layers=2"])
                .args(more)
                .arg("--out")
                .arg(&out),
        );
        out
    };
    // npy → f32 store: bit-identical values, in file order with shuffle off.
    let f32_store = import("f32", &["--param", "shuffle=false", "--task", "pos"]);
    let read = lca_store::Store::open(&f32_store).unwrap();
    assert_eq!(
        read.read_rows(0..rows).unwrap().into_raw_vec_and_offset().0,
        values
    );
    assert_eq!(read.manifest().neurons[3], "L1:0");
    assert_eq!(read.manifest().default_task, "pos");

    // f16 store → NeuroX JSON → f16 store: the same f16 values.
    let f16_store = import("f16", &["--dtype", "f16"]);
    let back = export_and_import(&f16_store, &dir.path().join("export/acts.json"), "f16");
    assert_same_store(&f16_store, &back);
    succeed(
        lca_command()
            .args(["store", "verify", "--quiet"])
            .arg(&back),
    );
}

#[test]
fn a_store_exported_as_neurox_hdf5_and_imported_again_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("small.toml");
    std::fs::write(
        &recipe,
        "[run]\nseed = 3\n\n[source.planted]\ntype = \"synthetic\"\ntokens = 900\nneurons = 24\n\
         layers = 2\nclasses = 3\nper_class = 2\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    succeed(
        lca_command()
            .args(["store", "create", "--quiet", "--out"])
            .arg(&store)
            .arg(&recipe),
    );
    let back = export_and_import(&store, &dir.path().join("neurox/acts.hdf5"), "f32");
    assert_same_store(&store, &back);
}

#[test]
fn bad_store_commands_fail_with_one_paragraph_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = fail(lca_command().args(["store", "info"]).arg(&missing));
    assert!(
        err.contains("is not a store") && err.contains("lca store create"),
        "{err}"
    );

    let err = fail(
        lca_command()
            .args(["store", "import", "acts.csv", "--labels", "l.txt", "--out"])
            .arg(dir.path().join("s")),
    );
    assert!(err.contains(".npy, .npz or .safetensors"), "{err}");
    let err = fail(
        lca_command()
            .args(["store", "import", "acts.json", "--labels", "l.txt", "--out"])
            .arg(dir.path().join("s")),
    );
    assert!(err.contains("--corpus"), "{err}");
    let err = fail(
        lca_command()
            .args(["store", "create", "--dtype", "f64", "--out"])
            .arg(dir.path().join("s"))
            .arg(repo("examples/recipes/lca-synthetic.toml")),
    );
    assert!(err.contains("f32, f16 or bf16"), "{err}");
    let err = fail(
        lca_command()
            .args(["store", "create", "--source", "nope", "--out"])
            .arg(dir.path().join("s"))
            .arg(repo("examples/recipes/lca-synthetic.toml")),
    );
    assert!(
        err.contains("no source `nope`") && err.contains("`planted`"),
        "{err}"
    );
    assert!(
        !dir.path().join("s").exists(),
        "nothing is written on refusal"
    );

    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("manifest.json"), "{\"format\": 3}").unwrap();
    let err = fail(lca_command().args(["store", "verify"]).arg(&store));
    assert!(
        err.contains("manifest.json") && err.contains("recreate"),
        "{err}"
    );
    let err = fail(
        lca_command()
            .args(["store", "export"])
            .arg(&store)
            .arg("--out")
            .arg(dir.path().join("x.h5")),
    );
    assert!(err.contains(".json nor .hdf5"), "{err}");
}
