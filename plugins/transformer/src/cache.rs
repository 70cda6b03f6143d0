//! The on-disk cache of extracted activations.
//!
//! An entry is a safetensors file named by its key: a hash of the model's
//! files, the words of the corpus and every extraction setting, so a
//! re-run of the same recipe reuses it and any change misses it. The
//! header records the key and a SHA-256 of the data; an entry whose key,
//! size or checksum does not match (a partial write, a flipped bit, an
//! older format) is rejected and rebuilt, never used. Entries are written
//! to a temporary file and renamed, so a crash never leaves a partial one
//! under the real name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use half::f16;
use lca_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the cache layout; part of every key.
pub const CACHE_FORMAT: &str = "lca-activations/1";

lca_core::param_enum! {
    /// How values are stored.
    pub enum Precision {
        /// 32-bit floats: exact.
        F32 = "f32",
        /// 16-bit floats: half the disk, about 3 significant digits.
        F16 = "f16",
    }
}

impl Precision {
    fn safetensors_dtype(self) -> &'static str {
        match self {
            Precision::F32 => "F32",
            Precision::F16 => "F16",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// Rounds values to what storage keeps, so that a fresh extraction and a
    /// cached one give the same numbers.
    pub fn round(self, values: &mut [f32]) {
        if self == Precision::F16 {
            for v in values {
                *v = f16::from_f32(*v).to_f32();
            }
        }
    }
}

/// Extracted activations with the per-sentence word counts they cover.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Rows × columns, row-major.
    pub values: Vec<f32>,
    /// Rows (words).
    pub rows: usize,
    /// Columns (layers × hidden).
    pub cols: usize,
    /// Words kept of each sentence (fewer than it has when truncated).
    pub kept: Vec<u32>,
}

/// SHA-256 of a file, in hex.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = BufReader::with_capacity(
        1 << 20,
        File::open(path).map_err(|e| Error::io("read", path, e))?,
    );
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds cache keys from named parts, in order.
#[derive(Clone, Debug, Default)]
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// Adds a named part.
    pub fn part(&mut self, name: &str, value: &[u8]) -> &mut Self {
        // Lengths first, so that no two part lists hash the same bytes.
        for bytes in [name.as_bytes(), value] {
            self.0.update((bytes.len() as u64).to_le_bytes());
            self.0.update(bytes);
        }
        self
    }

    /// The key, in hex.
    pub fn finish(&self) -> String {
        hex(&self.0.clone().finalize())
    }
}

/// The file of a key in `dir`.
pub fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{}.safetensors", &key[..key.len().min(32)]))
}

#[derive(Serialize, Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

fn tensor_bytes(stored: &Stored, precision: Precision) -> (Vec<u8>, Vec<u8>) {
    let mut values = Vec::with_capacity(stored.values.len() * precision.bytes());
    match precision {
        Precision::F32 => stored
            .values
            .iter()
            .for_each(|v| values.extend_from_slice(&v.to_le_bytes())),
        Precision::F16 => {
            stored
                .values
                .iter()
                .for_each(|v| values.extend_from_slice(&f16::from_f32(*v).to_le_bytes()));
        }
    }
    let kept = stored.kept.iter().flat_map(|k| k.to_le_bytes()).collect();
    (values, kept)
}

/// Writes an entry atomically.
///
/// # Errors
/// When the folder cannot be written.
pub fn write(
    path: &Path,
    key: &str,
    stored: &Stored,
    precision: Precision,
    settings: &BTreeMap<String, String>,
) -> Result<()> {
    let (values, kept) = tensor_bytes(stored, precision);
    let mut hasher = Sha256::new();
    hasher.update(&values);
    hasher.update(&kept);
    let mut metadata = settings.clone();
    metadata.insert("format".into(), CACHE_FORMAT.into());
    metadata.insert("key".into(), key.into());
    metadata.insert("sha256".into(), hex(&hasher.finalize()));
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(&metadata).expect("strings serialise"),
    );
    let info = |dtype: &str, shape: Vec<usize>, offsets: [usize; 2]| {
        serde_json::to_value(TensorInfo {
            dtype: dtype.into(),
            shape,
            data_offsets: offsets,
        })
        .expect("tensor info serialises")
    };
    header.insert(
        "activations".into(),
        info(
            precision.safetensors_dtype(),
            vec![stored.rows, stored.cols],
            [0, values.len()],
        ),
    );
    header.insert(
        "words_per_sentence".into(),
        info(
            "U32",
            vec![stored.kept.len()],
            [values.len(), values.len() + kept.len()],
        ),
    );
    let mut header = serde_json::to_vec(&header).expect("header serialises");
    // Pad the header with spaces so that the data starts 8-byte aligned.
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        out.write_all(&values)?;
        out.write_all(&kept)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        Error::io("write", path, e)
    })
}

/// Why an entry was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// There is no entry.
    Absent,
    /// There is one, but it cannot be trusted (the reason says why).
    Corrupt(String),
}

/// Reads the entry at `path` if it is complete and belongs to `key`, with
/// the metadata it was written with.
///
/// # Errors
/// [`Miss::Absent`] or [`Miss::Corrupt`] with the reason.
pub fn read(
    path: &Path,
    key: &str,
) -> std::result::Result<(Stored, Precision, BTreeMap<String, String>), Miss> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(e) => return Err(Miss::Corrupt(format!("cannot be opened: {e}"))),
    };
    let corrupt = |why: String| Miss::Corrupt(why);
    let size = file.metadata().map_err(|e| corrupt(e.to_string()))?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut len = [0u8; 8];
    input
        .read_exact(&mut len)
        .map_err(|_| corrupt("is shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 1 << 24 || header_len + 8 > size {
        return Err(corrupt(format!(
            "declares a {header_len}-byte header in a {size}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    input
        .read_exact(&mut header)
        .map_err(|e| corrupt(e.to_string()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("has an unreadable header: {e}")))?;
    let metadata: BTreeMap<String, String> = header
        .get("__metadata__")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .ok_or_else(|| corrupt("has no metadata".into()))?;
    if metadata.get("format").map(String::as_str) != Some(CACHE_FORMAT) {
        return Err(corrupt(format!("is not in format {CACHE_FORMAT}")));
    }
    if metadata.get("key").map(String::as_str) != Some(key) {
        return Err(corrupt("belongs to another key".into()));
    }
    let tensor = |name: &str| -> std::result::Result<TensorInfo, Miss> {
        header
            .get(name)
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .ok_or_else(|| corrupt(format!("has no `{name}` tensor")))
    };
    let acts = tensor("activations")?;
    let kept = tensor("words_per_sentence")?;
    let precision = match acts.dtype.as_str() {
        "F32" => Precision::F32,
        "F16" => Precision::F16,
        other => return Err(corrupt(format!("stores activations as {other}"))),
    };
    let [rows, cols] = acts.shape[..] else {
        return Err(corrupt("has activations that are not a matrix".into()));
    };
    // Sizes come from the file: overflow means a damaged header.
    let sizes = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(precision.bytes()))
        .zip(kept.shape.first().copied().unwrap_or(0).checked_mul(4))
        .filter(|(v, k)| v.checked_add(*k).and_then(|t| t.checked_add(8)).is_some());
    let Some((value_bytes, kept_bytes)) = sizes else {
        return Err(corrupt(format!(
            "declares {rows} × {cols} activations, more than any file holds"
        )));
    };
    if acts.data_offsets != [0, value_bytes]
        || kept.data_offsets != [value_bytes, value_bytes + kept_bytes]
        || 8 + header_len + (value_bytes + kept_bytes) as u64 != size
    {
        return Err(corrupt(format!(
            "is {size} bytes, which does not match its header (a partial write?)"
        )));
    }
    let mut hasher = Sha256::new();
    let mut values = Vec::with_capacity(rows * cols);
    let mut chunk = vec![0u8; (1 << 20) / 4 * 4];
    let mut remaining = value_bytes;
    while remaining > 0 {
        let n = remaining.min(chunk.len());
        input
            .read_exact(&mut chunk[..n])
            .map_err(|e| corrupt(e.to_string()))?;
        hasher.update(&chunk[..n]);
        match precision {
            Precision::F32 => values.extend(
                chunk[..n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Precision::F16 => values.extend(
                chunk[..n]
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
        remaining -= n;
    }
    let mut kept_raw = vec![0u8; kept_bytes];
    input
        .read_exact(&mut kept_raw)
        .map_err(|e| corrupt(e.to_string()))?;
    hasher.update(&kept_raw);
    if metadata.get("sha256").map(String::as_str) != Some(hex(&hasher.finalize()).as_str()) {
        return Err(corrupt(
            "fails its checksum (the data was altered or cut short)".into(),
        ));
    }
    let kept = kept_raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((
        Stored {
            values,
            rows,
            cols,
            kept,
        },
        precision,
        metadata,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        Stored {
            values: (0..12).map(|i| i as f32 * 0.1 - 0.3).collect(),
            rows: 4,
            cols: 3,
            kept: vec![3, 1],
        }
    }

    #[test]
    fn an_entry_reads_back_and_is_real_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry_path(dir.path(), "k1");
        write(&path, "k1", &stored(), Precision::F32, &BTreeMap::new()).unwrap();
        let (back, precision, _) = read(&path, "k1").unwrap();
        assert_eq!(back, stored());
        assert_eq!(precision, Precision::F32);
        let bytes = std::fs::read(&path).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(parsed.tensor("activations").unwrap().shape(), [4, 3]);
        assert_eq!(
            parsed.tensor("words_per_sentence").unwrap().dtype(),
            safetensors::Dtype::U32
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_header_declaring_more_than_the_file_holds_is_a_miss_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry_path(dir.path(), "k");
        write(&path, "k", &stored(), Precision::F32, &BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
        let huge = (1u64 << 62).to_string();
        let edited = header.replace("\"shape\":[4,3]", &format!("\"shape\":[{huge},{huge}]"));
        assert_ne!(edited, header);
        let mut damaged = (edited.len() as u64).to_le_bytes().to_vec();
        damaged.extend(edited.as_bytes());
        damaged.extend(&bytes[8 + header_len..]);
        std::fs::write(&path, damaged).unwrap();
        match read(&path, "k") {
            Err(Miss::Corrupt(why)) => assert!(why.contains("more than any file holds"), "{why}"),
            other => panic!("expected a corrupt entry, got {other:?}"),
        }
    }

    #[test]
    fn f16_entries_hold_rounded_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry_path(dir.path(), "k");
        write(&path, "k", &stored(), Precision::F16, &BTreeMap::new()).unwrap();
        let (back, precision, _) = read(&path, "k").unwrap();
        assert_eq!(precision, Precision::F16);
        let mut rounded = stored().values;
        Precision::F16.round(&mut rounded);
        assert_eq!(back.values, rounded);
        assert_ne!(
            rounded,
            stored().values,
            "f16 loses precision on these values"
        );
    }

    #[test]
    fn damaged_entries_are_rejected_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry_path(dir.path(), "k");
        assert_eq!(read(&path, "k").unwrap_err(), Miss::Absent);
        write(&path, "k", &stored(), Precision::F32, &BTreeMap::new()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let expect = |bytes: &[u8], needle: &str| {
            std::fs::write(&path, bytes).unwrap();
            match read(&path, "k") {
                Err(Miss::Corrupt(why)) => assert!(why.contains(needle), "{why}"),
                other => panic!("expected corruption, got {other:?}"),
            }
        };
        expect(&good[..good.len() - 5], "partial write");
        let mut flipped = good.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 0x40;
        expect(&flipped, "checksum");
        expect(&good[..6], "shorter");
        std::fs::write(&path, &good).unwrap();
        assert!(
            matches!(read(&path, "other"), Err(Miss::Corrupt(why)) if why.contains("another key"))
        );
    }

    #[test]
    fn keys_separate_their_parts() {
        let key = |parts: &[(&str, &str)]| {
            let mut k = KeyBuilder::default();
            for (n, v) in parts {
                k.part(n, v.as_bytes());
            }
            k.finish()
        };
        assert_eq!(key(&[("a", "bc")]), key(&[("a", "bc")]));
        assert_ne!(key(&[("a", "bc")]), key(&[("ab", "c")]));
        assert_ne!(key(&[("a", "b"), ("c", "")]), key(&[("a", "bc")]));
    }
}
