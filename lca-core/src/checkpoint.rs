//! Checkpoints: each finished step of a run, kept on disk so that a run that
//! was killed, timed out or interrupted can resume without redoing it.
//!
//! Every step gets a fingerprint, a SHA-256 digest of what determines its
//! result: the component and the code it comes from (the plugin library's
//! bytes, or the `lca` executable's for built-ins), its parameters and
//! wiring, its seed, and the fingerprints of its inputs. A source's
//! fingerprint covers the data it loaded, so a changed input file changes
//! every step downstream of it. A checkpoint is reused only when its
//! fingerprint matches, so a resumed run gives exactly the results of an
//! uninterrupted one.
//!
//! Layout of the checkpoint folder (one file per step, written atomically,
//! the entry last so that it only ever points at a complete state file):
//!
//! ```text
//! probe.en.state     the trained probe, as the probe stores itself
//! probe.en.json      {"format", "fingerprint", "state_sha256", "record"}
//! ranker.lca.json    {"format", "fingerprint", "record": the ranking}
//! evaluator.ab.json  {"format", "fingerprint", "record": the evaluation}
//! ```
//!
//! Sources are not stored: they are reloaded (the `transformer` source keeps
//! its own cache of extracted activations) and fingerprinted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io;
use crate::recipe::Step;
use crate::registry::Origin;

/// Version tag of checkpoint entries; part of every fingerprint.
pub const CHECKPOINT_FORMAT: &str = "lca-checkpoint/1";

/// The checkpoint folder of one output directory.
#[derive(Debug)]
pub struct Checkpoints {
    dir: PathBuf,
    resume: bool,
    /// Digests of code files, computed once per run.
    code_digests: Mutex<HashMap<PathBuf, String>>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    format: String,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_sha256: Option<String>,
    record: T,
}

/// The hex SHA-256 digest of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    io::hex(&Sha256::digest(bytes))
}

impl Checkpoints {
    /// Checkpoints kept in `dir`. With `resume`, matching checkpoints are
    /// reused; without it, every step runs and overwrites its checkpoint.
    pub fn new(dir: impl Into<PathBuf>, resume: bool) -> Self {
        Checkpoints {
            dir: dir.into(),
            resume,
            code_digests: Mutex::new(HashMap::new()),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether matching checkpoints are reused.
    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// The step keys that have a checkpoint, sorted.
    pub fn stored(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut keys: Vec<String> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json")
                    .filter(|k| !k.starts_with('.'))
                    .map(str::to_string)
            })
            .collect();
        keys.sort();
        keys
    }

    /// Removes the checkpoints of steps not in `keep` (steps deleted from
    /// the recipe, or renamed), and temporary files a killed run left.
    pub fn prune(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name
                .strip_suffix(".json")
                .or_else(|| name.strip_suffix(".state"));
            let stale = match key {
                _ if name.starts_with('.') => true,
                Some(key) => !keep.iter().any(|k| k == key),
                None => false,
            };
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The fingerprint of `step`, given its seed and its inputs'
    /// fingerprints (in wiring order), plus `extra` (a source's data digest).
    ///
    /// # Errors
    /// When the component's code file cannot be read.
    pub fn fingerprint(
        &self,
        step: &Step,
        seed: u64,
        inputs: &[&str],
        extra: Option<&str>,
    ) -> Result<String> {
        let description = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "lca": env!("CARGO_PKG_VERSION"),
            "key": step.key(),
            "type": step.type_name,
            "code": self.code_digest(&step.origin)?,
            "params": step.params,
            "source": step.source,
            "probe": step.probe,
            "rankings": step.rankings,
            "probes": step.probes,
            "seed": seed,
            "inputs": inputs,
            "data": extra,
        });
        Ok(sha256_hex(description.to_string().as_bytes()))
    }

    /// A digest of the code a component runs: its plugin library, or the
    /// running executable for built-ins.
    fn code_digest(&self, origin: &Origin) -> Result<String> {
        let (label, file) = match origin {
            Origin::Plugin {
                plugin,
                version,
                file,
            } => (format!("{plugin} {version}"), file.clone()),
            Origin::Builtin { version } => (
                format!("builtin {version}"),
                std::env::current_exe()
                    .map_err(|e| Error::io("find", Path::new("the lca executable"), e))?,
            ),
        };
        let mut digests = self.code_digests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(digest) = digests.get(&file) {
            return Ok(format!("{label} {digest}"));
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io("read", &file, e))?;
        // BLAKE3, as the dataset fingerprint: a plugin library is tens of
        // megabytes, hashed at the start of every run.
        let digest = io::hex(
            blake3::Hasher::new()
                .update_rayon(&bytes)
                .finalize()
                .as_bytes(),
        );
        digests.insert(file, digest.clone());
        Ok(format!("{label} {digest}"))
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn state_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.state"))
    }

    /// The stored record of step `key`, when resuming and its fingerprint
    /// matches. `Err` explains why a checkpoint that exists cannot be used
    /// (unreadable, damaged, or from another version of the step).
    ///
    /// # Errors
    /// A message for the user; the step then runs again.
    pub fn load<T: DeserializeOwned>(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> std::result::Result<Option<T>, String> {
        Ok(self.load_entry(key, fingerprint)?.map(|(record, _)| record))
    }

    /// As [`Checkpoints::load`], with the step's stored state bytes, checked
    /// against the digest its entry recorded.
    ///
    /// # Errors
    /// A message for the user; the step then runs again.
    pub fn load_with_state<T: DeserializeOwned>(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> std::result::Result<Option<(T, Vec<u8>)>, String> {
        let Some((record, digest)) = self.load_entry::<T>(key, fingerprint)? else {
            return Ok(None);
        };
        let Some(digest) = digest else {
            return Err("its checkpoint has no stored state".into());
        };
        let path = self.state_path(key);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read its checkpoint {}: {e}", path.display()))?;
        if sha256_hex(&bytes) != digest {
            return Err(format!(
                "its checkpoint {} is damaged (its digest does not match)",
                path.display()
            ));
        }
        Ok(Some((record, bytes)))
    }

    fn load_entry<T: DeserializeOwned>(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> std::result::Result<Option<(T, Option<String>)>, String> {
        if !self.resume {
            return Ok(None);
        }
        let path = self.entry_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot read its checkpoint {}: {e}",
                    path.display()
                ));
            }
        };
        let header: Entry<serde::de::IgnoredAny> = serde_json::from_slice(&bytes)
            .map_err(|e| format!("its checkpoint {} is damaged ({e})", path.display()))?;
        if header.format != CHECKPOINT_FORMAT || header.fingerprint != fingerprint {
            // The step, its inputs or its code changed: silently redo it.
            return Ok(None);
        }
        let entry: Entry<T> = serde_json::from_slice(&bytes)
            .map_err(|e| format!("its checkpoint {} is damaged ({e})", path.display()))?;
        Ok(Some((entry.record, entry.state_sha256)))
    }

    /// Stores the result of step `key`: `record`, and `state` bytes if the
    /// step has them (a trained probe).
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn save<T: Serialize>(
        &self,
        key: &str,
        fingerprint: &str,
        record: &T,
        state: Option<&[u8]>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("create directory", &self.dir, e))?;
        let path = self.state_path(key);
        let state_sha256 = match state {
            Some(bytes) => {
                io::write_atomic(&path, bytes)?;
                Some(sha256_hex(bytes))
            }
            None => {
                let _ = std::fs::remove_file(&path);
                None
            }
        };
        let entry = Entry {
            format: CHECKPOINT_FORMAT.into(),
            fingerprint: fingerprint.into(),
            state_sha256,
            record,
        };
        let json = serde_json::to_vec(&entry)
            .map_err(|e| Error::input(format!("cannot store the checkpoint of {key}: {e}")))?;
        io::write_atomic(&self.entry_path(key), &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_record_comes_back_only_when_resuming_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Checkpoints::new(dir.path().join("ck"), false);
        writer
            .save("ranker.a", "f1", &vec![3u32, 1, 2], None)
            .unwrap();
        assert_eq!(writer.load::<Vec<u32>>("ranker.a", "f1"), Ok(None));

        let resumer = Checkpoints::new(dir.path().join("ck"), true);
        assert_eq!(
            resumer.load::<Vec<u32>>("ranker.a", "f1"),
            Ok(Some(vec![3, 1, 2]))
        );
        assert_eq!(resumer.load::<Vec<u32>>("ranker.a", "f2"), Ok(None));
        assert_eq!(resumer.load::<Vec<u32>>("ranker.b", "f1"), Ok(None));
        assert_eq!(resumer.stored(), vec!["ranker.a".to_string()]);
    }

    #[test]
    fn damaged_checkpoints_are_explained_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(dir.path(), true);
        ck.save("probe.p", "f", &"record", Some(b"state bytes"))
            .unwrap();
        assert_eq!(
            ck.load_with_state::<String>("probe.p", "f"),
            Ok(Some(("record".to_string(), b"state bytes".to_vec())))
        );
        std::fs::write(dir.path().join("probe.p.state"), b"state bytez").unwrap();
        let err = ck.load_with_state::<String>("probe.p", "f").unwrap_err();
        assert!(err.contains("probe.p.state is damaged"), "{err}");

        std::fs::write(dir.path().join("probe.p.json"), b"{\"format\": ").unwrap();
        let err = ck.load::<String>("probe.p", "f").unwrap_err();
        assert!(err.contains("probe.p.json is damaged"), "{err}");

        // A record of another shape under a matching fingerprint.
        ck.save("ranker.r", "f", &42u32, None).unwrap();
        assert!(ck.load::<Vec<String>>("ranker.r", "f").is_err());
        // A record kept without state cannot stand in for one with state.
        assert!(ck.load_with_state::<u32>("ranker.r", "f").is_err());
    }

    #[test]
    fn pruning_keeps_only_the_named_steps() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(dir.path(), true);
        ck.save("probe.keep", "f", &1, Some(b"s")).unwrap();
        ck.save("probe.gone", "f", &1, Some(b"s")).unwrap();
        std::fs::write(dir.path().join(".probe.keep.json.tmp-1"), b"").unwrap();
        ck.prune(&["probe.keep".to_string()]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["probe.keep.json", "probe.keep.state"]);
    }
}
