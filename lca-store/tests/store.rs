//! Stores written and read back: values, metadata, damage and refusals.

use std::collections::BTreeMap;
use std::path::Path;

use lca_core::data::{
    ActivationMatrix, Dataset, Labels, NeuronId, NeuronIndex, Site, Splits, Tokens,
};
use lca_store::{Dtype, MANIFEST_FILE, Store, StoreWriter, write_dataset};
use ndarray::Array2;
use proptest::prelude::*;

/// `rows` rows of 6 neurons (two layers of the MLP site), values spread
/// over several magnitudes so that f16 and bf16 round differently.
fn dataset(rows: usize) -> Dataset<'static> {
    let values = Array2::from_shape_fn((rows, 6), |(r, c)| {
        ((r * 7 + c * 13) % 23) as f32 * 0.37 - 4.0 + (c as f32) * 1e-3
    });
    let ids = (0..6)
        .map(|c| NeuronId::at(Site::Mlp, 1 + c / 3, c % 3))
        .collect();
    let classes = ["NN", "VB", "DT"];
    let labels: Vec<&str> = (0..rows).map(|r| classes[r % 3]).collect();
    let words = (0..rows).map(|r| format!("w{r}")).collect();
    let starts = (0..rows).step_by(4).collect();
    let train = rows * 6 / 10;
    let dev = (rows - train) / 2;
    Dataset::new(
        "toy",
        ActivationMatrix::from_array(values),
        NeuronIndex::from_ids(ids),
        Labels::from_names(&labels),
        Some(Tokens::new(words, starts).unwrap()),
        Splits {
            train,
            dev,
            test: rows - train - dev,
        },
    )
    .unwrap()
    .with_details(BTreeMap::from([("model".into(), "toy-model".into())]))
}

fn rounded(values: &[f32], dtype: Dtype) -> Vec<f32> {
    values
        .iter()
        .map(|&v| match dtype {
            Dtype::F32 => v,
            Dtype::F16 => half::f16::from_f32(v).to_f32(),
            Dtype::Bf16 => half::bf16::from_f32(v).to_f32(),
        })
        .collect()
}

fn same_data(read: &Dataset<'_>, written: &Dataset<'_>, dtype: Dtype) {
    assert_eq!(
        read.acts().to_contiguous().to_vec(),
        rounded(&written.acts().to_contiguous(), dtype)
    );
    assert_eq!(read.neurons(), written.neurons());
    assert_eq!(read.labels().ids(), written.labels().ids());
    assert_eq!(read.classes().names(), written.classes().names());
    assert_eq!(read.splits(), written.splits());
    let (r, w) = (read.tokens().unwrap(), written.tokens().unwrap());
    assert_eq!(r.words(), w.words());
    assert_eq!(r.sentence_starts(), w.sentence_starts());
    assert_eq!(read.details()["model"], "toy-model");
}

fn write(data: &Dataset<'_>, dir: &Path, dtype: Dtype, shard_rows: usize) {
    write_dataset(data, dir, dtype, shard_rows, "pos", |_| {}).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any shard size and value type gives back the dataset: f32 bit for
    /// bit, f16 and bf16 as the values rounded to that type.
    #[test]
    fn a_store_reads_back_what_was_written(rows in 1usize..60, shard_rows in 1usize..70, dtype in 0usize..3) {
        let dtype = Dtype::ALL[dtype];
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(rows);
        write(&data, dir.path(), dtype, shard_rows);
        let store = Store::open(dir.path()).unwrap();
        prop_assert_eq!(store.manifest().shards.len(), rows.div_ceil(shard_rows));
        store.verify(None).unwrap();
        let read = store.dataset("again", None).unwrap();
        same_data(&read, &data, dtype);
        // Any row range crosses shard borders correctly.
        let (a, b) = (rows / 3, rows - rows / 4);
        let part = store.read_rows(a..b).unwrap();
        prop_assert_eq!(part, read.acts().block(a..b).to_owned());
    }
}

/// The file that the memory at `address` maps, from the kernel's list of
/// this process's mappings.
fn mapped_file(address: *const f32) -> Option<std::path::PathBuf> {
    let address = address as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        let path = fields.nth(4)?;
        (start <= address && address < end).then(|| path.into())
    })
}

#[test]
fn a_one_shard_f32_store_is_used_in_place_and_is_real_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(20);
    write(&data, dir.path(), Dtype::F32, 100);
    let store = Store::open(dir.path()).unwrap();
    let matrix = store.matrix().unwrap();
    let map_file = dir.path().join(&store.manifest().shards[0].file);
    let bytes = std::fs::read(&map_file).unwrap();
    // The matrix's values are the file's bytes, not a copy: the kernel says
    // their memory maps the shard, and they equal the file's tail.
    let values = matrix.as_slice().unwrap();
    assert_eq!(mapped_file(values.as_ptr()), Some(map_file.clone()));
    assert_eq!(
        bytemuck::cast_slice::<f32, u8>(values),
        &bytes[bytes.len() - 20 * 6 * 4..]
    );
    // Any safetensors reader sees one 20 × 6 f32 tensor.
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor("activations").unwrap();
    assert_eq!(view.shape(), [20, 6]);
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
}

#[test]
fn the_shards_of_an_f32_store_are_mapped_side_by_side_as_one_matrix() {
    // Six neurons of f32 are 24 bytes a row, so 512 rows fill whole pages:
    // the shard size `lca store` picks for this width.
    let shard_rows = lca_store::rows_per_shard(6, Dtype::F32, 600 * 24);
    assert_eq!(shard_rows, 512);
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(1300);
    write(&data, dir.path(), Dtype::F32, shard_rows);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.manifest().shards.len(), 3);
    let matrix = store.matrix().unwrap();
    assert_eq!(matrix.view(), data.acts().view());
    // Each shard's first row is that shard's file in memory, not a copy.
    let values = matrix.as_slice().unwrap();
    for (index, shard) in store.manifest().shards.iter().enumerate() {
        let first = &values[index * shard_rows * 6];
        assert_eq!(
            mapped_file(first),
            Some(dir.path().join(&shard.file)),
            "shard {index}"
        );
    }

    // Shards of a size chosen by hand, not whole pages, are read into
    // memory instead, with the same values.
    let by_hand = tempfile::tempdir().unwrap();
    write(&data, by_hand.path(), Dtype::F32, 500);
    let store = Store::open(by_hand.path()).unwrap();
    let matrix = store.matrix().unwrap();
    assert_eq!(matrix.view(), data.acts().view());
    let file = mapped_file(matrix.as_slice().unwrap().as_ptr());
    assert!(
        !file.as_ref().is_some_and(|f| f.starts_with(by_hand.path())),
        "{file:?}"
    );
}

#[test]
fn f16_and_bf16_stores_are_used_in_place_in_their_width() {
    for dtype in [Dtype::F16, Dtype::Bf16] {
        // One shard, and three shards of whole pages (6 neurons × 2 bytes:
        // 1,024 rows a shard) mapped side by side.
        for (rows, shard_rows) in [
            (20, 100),
            (2500, lca_store::rows_per_shard(6, dtype, 1200 * 12)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let data = dataset(rows);
            write(&data, dir.path(), dtype, shard_rows);
            let store = Store::open(dir.path()).unwrap();
            let shards = store.manifest().shards.len();
            assert_eq!(shards, rows.div_ceil(shard_rows));
            let matrix = store.matrix().unwrap();
            let expected = rounded(&data.acts().to_contiguous(), dtype);
            let (bits, format) = matrix.half_bits().expect("held in 16 bits, not converted");
            assert_eq!(format.as_str(), dtype.as_str());
            assert!(matrix.as_slice().is_none());
            assert_eq!(matrix.to_contiguous().as_ref(), &expected[..], "{dtype:?}");
            // Each shard's first row is that shard's file in memory.
            for (index, shard) in store.manifest().shards.iter().enumerate() {
                let first = bits[index * shard_rows * 6..].as_ptr().cast::<f32>();
                assert_eq!(
                    mapped_file(first),
                    Some(dir.path().join(&shard.file)),
                    "{dtype:?}, shard {index} of {shards}"
                );
            }
            // The dataset a run gets keeps the width, and its splits borrow it.
            let read = store.dataset("again", None).unwrap();
            let train = read.split(lca_core::data::Split::Train);
            let first = train.acts.half_bits().unwrap().0.as_ptr().cast::<f32>();
            let shard = &store.manifest().shards[0].file;
            assert_eq!(mapped_file(first), Some(dir.path().join(shard)));
            same_data(&read, &data, dtype);
        }
    }
}

#[test]
fn verify_names_a_shard_with_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    write(&dataset(30), dir.path(), Dtype::F16, 10);
    let shard = dir.path().join("shard-000001.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let store = Store::open(dir.path()).expect("sizes still agree");
    let err = store.verify(None).unwrap_err().to_string();
    assert!(
        err.contains("shard-000001.safetensors") && err.contains("SHA-256"),
        "{err}"
    );
}

/// A store's dataset is fingerprinted by its shards' hashes and file times,
/// not by reading every value: the same store gives the same fingerprint,
/// a shard rewritten in place (same size, new time) gives another.
#[test]
fn a_store_vouches_for_its_values_with_its_shard_hashes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(30);
    write(&data, dir.path(), Dtype::F32, 10);
    let fingerprint = || {
        Store::open(dir.path())
            .unwrap()
            .dataset("d", None)
            .unwrap()
            .fingerprint()
    };
    let reference = fingerprint();
    assert_eq!(fingerprint(), reference);
    // Not the digest of the values themselves, which a larger-than-memory
    // store could only give by being read whole.
    assert_ne!(
        Store::open(dir.path())
            .unwrap()
            .dataset("d", None)
            .unwrap()
            .into_owned()
            .select_neurons(&(0..data.n_neurons()).collect::<Vec<_>>())
            .unwrap()
            .fingerprint(),
        reference
    );
    let shard = dir.path().join("shard-000001.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&shard).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(file);
    assert_ne!(fingerprint(), reference);
}

/// A writer told how many rows it will get streams each shard while it
/// fills: the store is the one a writer told nothing writes, byte for
/// byte, and a wrong count is an error that leaves no partial shard.
#[test]
fn an_announced_writer_streams_the_same_store_and_refuses_a_wrong_count() {
    let data = dataset(45);
    let neurons = data.neurons().clone();
    let write_with = |dir: &Path, announced: Option<usize>, rows: usize| {
        let mut writer = StoreWriter::create(dir, Dtype::F32, &neurons, 10).unwrap();
        if let Some(n) = announced {
            writer = writer.expecting(n);
        }
        for start in (0..rows).step_by(7) {
            let end = (start + 7).min(rows);
            writer.push(data.acts().block(start..end).view())?;
        }
        writer.finish(lca_store::StoreMeta::of(data.outline(), "labels"))
    };
    let (plain, streamed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_with(plain.path(), None, 45).unwrap();
    write_with(streamed.path(), Some(45), 45).unwrap();
    for file in [
        "manifest.json",
        "shard-000000.safetensors",
        "shard-000004.safetensors",
    ] {
        assert_eq!(
            std::fs::read(plain.path().join(file)).unwrap(),
            std::fs::read(streamed.path().join(file)).unwrap(),
            "{file}"
        );
    }
    // Shards of many pages, sent in several pieces, most of them written
    // around the page cache, with a tail that is not a whole page.
    let large = dataset(40_000);
    let (plain, streamed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, announced) in [(plain.path(), None), (streamed.path(), Some(40_000))] {
        let mut writer = StoreWriter::create(dir, Dtype::F32, &neurons, 10_923).unwrap();
        if let Some(n) = announced {
            writer = writer.expecting(n);
        }
        for start in (0..40_000).step_by(4_999) {
            let end = (start + 4_999).min(40_000);
            writer.push(large.acts().block(start..end).view()).unwrap();
        }
        writer
            .finish(lca_store::StoreMeta::of(large.outline(), "labels"))
            .unwrap();
    }
    for file in [
        "manifest.json",
        "shard-000000.safetensors",
        "shard-000003.safetensors",
    ] {
        assert_eq!(
            std::fs::read(plain.path().join(file)).unwrap(),
            std::fs::read(streamed.path().join(file)).unwrap(),
            "{file}"
        );
    }
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // Fewer rows than announced: the shard being filled is not kept.
    let short = tempfile::tempdir().unwrap();
    let err = write_with(short.path(), Some(45), 33)
        .unwrap_err()
        .to_string();
    assert!(err.contains("announced 45 rows and given 33"), "{err}");
    assert!(
        listing(short.path()).iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        listing(short.path())
    );
    // More rows than announced.
    let long = tempfile::tempdir().unwrap();
    let err = write_with(long.path(), Some(40), 45)
        .unwrap_err()
        .to_string();
    assert!(err.contains("announced 40"), "{err}");
    assert!(listing(long.path()).iter().all(|n| !n.contains(".tmp-")));
}

#[test]
fn damaged_or_missing_files_are_named_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    write(&dataset(30), dir.path(), Dtype::F32, 10);

    let shard = dir.path().join("shard-000002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 4]).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("shard-000002") && err.contains("cut short"),
        "{err}"
    );
    std::fs::write(&shard, &bytes).unwrap();

    let rows = dir.path().join("rows.json");
    let text = std::fs::read_to_string(&rows).unwrap();
    std::fs::write(&rows, text.replace("\"w3\"", "\"w4\"")).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("rows.json") && err.contains("SHA-256"),
        "{err}"
    );
    std::fs::write(&rows, &text).unwrap();
    Store::open(dir.path()).unwrap();

    std::fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("no manifest.json") && err.contains("cut short"),
        "{err}"
    );
}

#[test]
fn an_existing_store_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    write(&dataset(10), dir.path(), Dtype::F32, 4);
    let before = std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
    let err = write_dataset(&dataset(12), dir.path(), Dtype::F16, 4, "pos", |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a store"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap(),
        before
    );
}

#[test]
fn values_beyond_f16_are_refused_rather_than_made_infinite() {
    let dir = tempfile::tempdir().unwrap();
    let neurons = NeuronIndex::layer_major(2, 1).unwrap();
    let mut writer = StoreWriter::create(dir.path(), Dtype::F16, &neurons, 8).unwrap();
    writer
        .push(Array2::from_elem((3, 2), 1.5f32).view())
        .unwrap();
    let mut big = Array2::from_elem((2, 2), 0.5f32);
    big[[1, 1]] = 1e5;
    let err = writer.push(big.view()).unwrap_err().to_string();
    assert!(
        err.contains("row 4") && err.contains("L0:1") && err.contains("bf16"),
        "{err}"
    );
    // bf16 holds it.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = StoreWriter::create(dir.path(), Dtype::Bf16, &neurons, 8).unwrap();
    writer.push(big.view()).unwrap();
}

#[test]
fn a_task_the_store_lacks_is_named_with_those_it_has() {
    let dir = tempfile::tempdir().unwrap();
    write(&dataset(10), dir.path(), Dtype::F32, 4);
    let store = Store::open(dir.path()).unwrap();
    let err = store.dataset("x", Some("ner")).unwrap_err().to_string();
    assert!(
        err.contains("no task `ner`") && err.contains("`pos`"),
        "{err}"
    );
}

/// Writes the first `rows` rows of `data` through a resumable writer, then
/// stops without finishing, as a killed writer would.
fn write_interrupted(data: &Dataset<'_>, dir: &Path, fingerprint: &str, rows: usize) {
    let mut writer = StoreWriter::resume(
        dir,
        Dtype::F32,
        data.neurons(),
        5,
        fingerprint,
        data.n_rows(),
    )
    .unwrap();
    writer.push(data.acts().block(0..rows).view()).unwrap();
}

/// An interrupted writer's finished shards are kept when the same content
/// is written again; changed shards, and those after them, are written
/// again; a record of other content keeps nothing. The finished store is
/// the one an uninterrupted writer makes.
#[test]
fn a_resumed_writer_keeps_the_intact_shards_of_the_same_content() {
    let data = dataset(23);
    let reference = tempfile::tempdir().unwrap();
    write(&data, reference.path(), Dtype::F32, 5);
    let finish = |writer: StoreWriter, dir: &Path| {
        let mut writer = writer;
        let from = writer.rows();
        writer
            .push(data.acts().block(from..data.n_rows()).view())
            .unwrap();
        writer
            .finish(lca_store::StoreMeta::of(data.outline(), "pos"))
            .unwrap();
        assert!(!dir.join(lca_store::PROGRESS_FILE).exists());
        let (a, b) = (
            Store::open(dir).unwrap().manifest().clone(),
            Store::open(reference.path()).unwrap().manifest().clone(),
        );
        assert_eq!(a, b, "the resumed store is the uninterrupted one");
    };
    let resume = |dir: &Path, fingerprint: &str| {
        StoreWriter::resume(
            dir,
            Dtype::F32,
            data.neurons(),
            5,
            fingerprint,
            data.n_rows(),
        )
        .unwrap()
    };

    // 13 rows pushed: two full shards on record, three rows lost.
    let dir = tempfile::tempdir().unwrap();
    write_interrupted(&data, dir.path(), "recipe A", 13);
    assert!(!dir.path().join(MANIFEST_FILE).exists());
    let writer = resume(dir.path(), "recipe A");
    assert_eq!(writer.rows(), 10);
    finish(writer, dir.path());

    // A changed byte in the second shard: only the first is kept.
    let dir = tempfile::tempdir().unwrap();
    write_interrupted(&data, dir.path(), "recipe A", 20);
    let second = dir.path().join("shard-000001.safetensors");
    let mut bytes = std::fs::read(&second).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&second, bytes).unwrap();
    let writer = resume(dir.path(), "recipe A");
    assert_eq!(writer.rows(), 5);
    finish(writer, dir.path());

    // Another fingerprint, or another row count: nothing is kept.
    let dir = tempfile::tempdir().unwrap();
    write_interrupted(&data, dir.path(), "recipe A", 20);
    assert_eq!(resume(dir.path(), "recipe B").rows(), 0);
    let other_rows =
        StoreWriter::resume(dir.path(), Dtype::F32, data.neurons(), 5, "recipe A", 24).unwrap();
    assert_eq!(other_rows.rows(), 0);
    finish(resume(dir.path(), "recipe A"), dir.path());
}
