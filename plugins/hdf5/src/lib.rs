//! The `neurox_hdf5` source: activations from NeuroX's HDF5 files.
//!
//! A NeuroX HDF5 file holds one dataset per sentence, named `"0"`, `"1"`, …,
//! of shape `[layers, words, hidden]`, and a dataset `sentence_to_index`:
//! one string holding a JSON object from sentence text to dataset name.
//! Like NeuroX, sentences are read in the order of that object, and each
//! block is flattened to `[words, layers·hidden]` (column = layer position ×
//! hidden + unit). The file does not record which layers were stored, so
//! files written with NeuroX's `filter_layers` or `decompose_layers` name
//! them with the `layers` parameter.
//!
//! The plugin also writes such files: the `neurox_hdf5_export` evaluator
//! (see [`export`]).
//!
//! This plugin links the system HDF5 library (`scripts/install-system-deps.sh`
//! installs it); everything else about NeuroX files is in `lca-core`.

use std::path::Path;

use hdf5_metno as hdf5;
use lca_builtin::neurox::{
    NeuroxActivations, NeuroxSource, NeuroxSourceParams, SentenceActivations, relabel_layers,
};
use lca_core::ndarray::{Array2, Array3};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, Error, Result};
use serde::de::{Deserializer, MapAccess, Visitor};

mod export;

const NAME: &str = "neurox_hdf5";

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Activations from a NeuroX HDF5 file, with its sentence and label files".into(),
            params: NeuroxSourceParams::docs(),
            example: "[source.acts]\ntype = \"neurox_hdf5\"\nactivations = \"activations.hdf5\"\ncorpus = \"sentences.txt\"\nlabels = \"labels.txt\"\n"
                .into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = NeuroxSourceParams::parse(NAME, table)?;
            Ok(Component::Source(Box::new(NeuroxSource::new(NAME, p, read_source)?)))
        },
        applied: applied::<NeuroxSourceParams>,
    }
}

fn read_source(path: &Path, layers: Option<&[u32]>) -> Result<NeuroxActivations> {
    relabel_layers(read(path)?, layers, NAME)
}

/// The JSON object's entries in stored order (NeuroX iterates it so).
fn ordered_entries(json: &str) -> serde_json::Result<Vec<(String, String)>> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object from sentence text to dataset name")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, String>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    serde_json::Deserializer::from_str(json).deserialize_map(Entries)
}

/// Strips NeuroX's ` (Occurrence k)` suffix from a repeated sentence.
fn sentence_text(key: &str) -> &str {
    match key.rfind(" (Occurrence ") {
        Some(at) if key.ends_with(')') => &key[..at],
        _ => key,
    }
}

/// Reads a NeuroX HDF5 activation file, as NeuroX's `load_activations`
/// does, into `f32` (values stored as f16 or f64 are converted by HDF5).
/// Layers are numbered 0, 1, … in stored order.
///
/// The HDF5 C library crashes (SIGSEGV) on some damaged files, which
/// fuzzing found; a crash must not take `lca` down with it. On Unix the file
/// is therefore parsed in a forked child process that sends the activations
/// back through a pipe, and a child killed by a signal becomes an error
/// naming the file.
///
/// # Errors
/// A file that is not HDF5, lacks `sentence_to_index`, names a missing
/// dataset, holds blocks of different layer counts or widths, or makes the
/// HDF5 library crash.
pub fn read(path: &Path) -> Result<NeuroxActivations> {
    #[cfg(unix)]
    {
        isolated::read(path, isolated::time_limit(path), read_in_process)
    }
    #[cfg(not(unix))]
    {
        read_in_process(path)
    }
}

/// [`read`]'s isolation around any `reader`, with a given time limit: the
/// tests check the guard with readers that sleep, abort or panic, because
/// what the HDF5 library does on a given damaged file varies between its
/// versions and runs.
///
/// # Errors
/// What `reader` returns, or an error naming `path` when the reader takes
/// longer than `limit`, panics or is killed by a signal.
#[cfg(unix)]
#[doc(hidden)]
pub fn read_isolated_with(
    path: &Path,
    limit: std::time::Duration,
    reader: fn(&Path) -> Result<NeuroxActivations>,
) -> Result<NeuroxActivations> {
    isolated::read(path, limit, reader)
}

/// Held while this process is inside the HDF5 library, and while [`read`]
/// forks: a child forked while another thread holds the library's global
/// lock would wait for that lock forever (only the forking thread exists in
/// the child), and its read would end at the time limit as a false error.
pub(crate) static IN_LIBRARY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`read`] in this process, with no protection from the HDF5 library.
///
/// # Errors
/// As [`read`].
pub fn read_in_process(path: &Path) -> Result<NeuroxActivations> {
    let _in_library = IN_LIBRARY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bad = |message: String| Error::format(path, None, message);
    let h5 = |what: &str, e: hdf5::Error| bad(format!("{what}: {e}"));
    if !path.is_file() {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let file_size = std::fs::metadata(path)
        .map_err(|e| Error::io("read", path, e))?
        .len();
    let file = hdf5::File::open(path).map_err(|e| h5("is not a readable HDF5 file", e))?;
    let index = file.dataset("sentence_to_index").map_err(|e| {
        h5(
            "has no `sentence_to_index` dataset, so it was not written by NeuroX",
            e,
        )
    })?;
    let json = match index.read_raw::<hdf5::types::VarLenUnicode>() {
        Ok(v) => v.first().map(|s| s.as_str().to_string()),
        Err(_) => index
            .read_raw::<hdf5::types::VarLenAscii>()
            .map_err(|e| h5("has a `sentence_to_index` that is not a string", e))?
            .first()
            .map(|s| s.as_str().to_string()),
    }
    .ok_or_else(|| bad("has an empty `sentence_to_index`".into()))?;
    let entries = ordered_entries(&json).map_err(|e| {
        bad(format!(
            "has a `sentence_to_index` that is not a JSON object: {e}"
        ))
    })?;
    let mut shape: Option<(usize, usize)> = None;
    let mut sentences = Vec::with_capacity(entries.len());
    for (key, name) in &entries {
        let dataset = file.dataset(name).map_err(|e| {
            h5(
                &format!("has no dataset `{name}`, which `sentence_to_index` names for {key:?}"),
                e,
            )
        })?;
        let dims = dataset.shape();
        let [layers, words, hidden] = dims[..] else {
            return Err(bad(format!(
                "dataset `{name}` has shape {dims:?}; NeuroX blocks are [layers, words, hidden]"
            )));
        };
        // A damaged header can declare any shape, and HDF5 would allocate
        // it; a sound block fits in the file (h5py does not compress
        // NeuroX's data; 1000× leaves room for files that are).
        let declared = layers
            .checked_mul(words)
            .and_then(|n| n.checked_mul(hidden))
            .and_then(|n| n.checked_mul(4));
        if declared.is_none_or(|bytes| bytes as u64 > file_size.saturating_mul(1000)) {
            return Err(bad(format!(
                "dataset `{name}` declares {layers} × {words} × {hidden} values, far more than \
                 this {file_size}-byte file holds; the file is damaged"
            )));
        }
        match shape {
            None => shape = Some((layers, hidden)),
            Some(s) if s != (layers, hidden) => {
                return Err(bad(format!(
                    "dataset `{name}` has {layers} layers × {hidden} units, but the first one has {} × {}",
                    s.0, s.1
                )));
            }
            Some(_) => {}
        }
        let raw = dataset
            .read_raw::<f32>()
            .map_err(|e| h5(&format!("dataset `{name}` cannot be read as numbers"), e))?;
        let block = Array3::from_shape_vec((layers, words, hidden), raw)
            .expect("HDF5 returns the dataset's shape");
        // [L, T, H] → [T, L, H] → [T, L·H].
        let flat: Vec<f32> = block.permuted_axes([1, 0, 2]).iter().copied().collect();
        let values =
            Array2::from_shape_vec((words, layers * hidden), flat).expect("same number of values");
        let text: Vec<String> = sentence_text(key).split(' ').map(String::from).collect();
        let tokens = if text.len() == words {
            text
        } else {
            vec![String::new(); words]
        };
        sentences.push(SentenceActivations { tokens, values });
    }
    let (layers, hidden) = shape.ok_or_else(|| bad("holds no sentences".into()))?;
    Ok(NeuroxActivations {
        path: path.to_path_buf(),
        layers: (0..layers as u32).collect(),
        hidden,
        sentences,
    })
}

#[cfg(unix)]
mod isolated {
    //! Parsing in a forked child. The child encodes its result into the
    //! pipe; the parent decodes it after the child exits.

    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::path::Path;
    use std::time::Duration;

    use lca_builtin::neurox::{NeuroxActivations, SentenceActivations};
    use lca_core::ndarray::Array2;
    use lca_core::{Error, Result};

    /// Overrides the time the HDF5 library gets to read a file.
    pub(crate) const TIME_LIMIT_VAR: &str = "LCA_HDF5_SECONDS";

    /// 60 s plus 10 s per 100 MB of file, unless [`TIME_LIMIT_VAR`] says
    /// otherwise: far more than a sound file takes.
    pub(crate) fn time_limit(path: &Path) -> Duration {
        if let Some(seconds) = std::env::var(TIME_LIMIT_VAR)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            return Duration::from_secs_f64(seconds);
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Duration::from_secs(60 + size / 10_000_000)
    }

    pub(crate) fn read(
        path: &Path,
        limit: Duration,
        reader: fn(&Path) -> Result<NeuroxActivations>,
    ) -> Result<NeuroxActivations> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe` writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return reader(path);
        }
        let [from_child, to_parent] = fds;
        // Never while another thread is inside the HDF5 library (see
        // `IN_LIBRARY`); parent and child each release their copy of the
        // lock when the block ends.
        let pid = {
            let _no_reader = super::IN_LIBRARY
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // SAFETY: the child only reads the file, writes the pipe and
            // leaves with `_exit`, running no destructors or exit handlers.
            unsafe { libc::fork() }
        };
        if pid < 0 {
            // SAFETY: both descriptors were opened above and are ours.
            unsafe {
                libc::close(from_child);
                libc::close(to_parent);
            }
            return reader(path);
        }
        if pid == 0 {
            // SAFETY: the read end belongs to the parent; the write end is
            // ours alone, wrapped once.
            let mut out = unsafe {
                libc::close(from_child);
                File::from_raw_fd(to_parent)
            };
            let outcome = std::panic::catch_unwind(|| reader(path));
            let bytes = match outcome {
                Ok(Ok(activations)) => encode(&activations),
                Ok(Err(e)) => failure(&e.to_string()),
                Err(_) => failure(&format!("{}: the HDF5 reader panicked", path.display())),
            };
            let status = i32::from(out.write_all(&bytes).is_err());
            // SAFETY: ends the child at once, as `fork` requires.
            unsafe { libc::_exit(status) };
        }
        // SAFETY: the write end belongs to the child; the read end is ours
        // alone, wrapped once.
        let mut input = unsafe {
            libc::close(to_parent);
            File::from_raw_fd(from_child)
        };
        // The child writes only once it has read the whole file, so waiting
        // for its first byte bounds the time the HDF5 library may take.
        let mut poll = libc::pollfd {
            fd: from_child,
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = std::time::Instant::now() + limit;
        let ready = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            // A signal (Ctrl-C, a child ending) interrupts the wait; it goes on.
            if ready >= 0
                || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break ready;
            }
        };
        if ready == 0 {
            // SAFETY: `pid` is our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(Error::format(
                path,
                None,
                format!(
                    "the HDF5 library did not finish reading this file within {} s and was \
                     stopped; it loops on some damaged files. Export the activations again, \
                     or allow more time with {TIME_LIMIT_VAR}=SECONDS",
                    limit.as_secs_f64()
                ),
            ));
        }
        let mut bytes = Vec::new();
        let received = input.read_to_end(&mut bytes);
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFSIGNALED(status) {
            return Err(Error::format(
                path,
                None,
                format!(
                    "the HDF5 library crashed (signal {}) while reading this file, so it is \
                     damaged or not an HDF5 file; export the activations again (NeuroX \
                     writes them with h5py), or use NeuroX's JSON format",
                    libc::WTERMSIG(status)
                ),
            ));
        }
        received.map_err(|e| Error::io("read", path, e))?;
        decode(path, &bytes).ok_or_else(|| {
            Error::format(
                path,
                None,
                "the process reading this file ended without an answer".to_string(),
            )
        })?
    }

    fn put(out: &mut Vec<u8>, n: usize) {
        out.extend((n as u64).to_le_bytes());
    }

    fn failure(message: &str) -> Vec<u8> {
        let mut out = vec![1];
        put(&mut out, message.len());
        out.extend(message.as_bytes());
        out
    }

    fn encode(a: &NeuroxActivations) -> Vec<u8> {
        let values: usize = a.sentences.iter().map(|s| s.values.len()).sum();
        let mut out = Vec::with_capacity(64 + values * 4);
        out.push(0);
        put(&mut out, a.layers.len());
        out.extend(a.layers.iter().flat_map(|l| l.to_le_bytes()));
        put(&mut out, a.hidden);
        put(&mut out, a.sentences.len());
        for s in &a.sentences {
            put(&mut out, s.tokens.len());
            for token in &s.tokens {
                put(&mut out, token.len());
                out.extend(token.as_bytes());
            }
            put(&mut out, s.values.nrows());
            put(&mut out, s.values.ncols());
            out.extend(s.values.iter().flat_map(|v| v.to_le_bytes()));
        }
        out
    }

    /// A cursor over the child's answer.
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let piece = self.bytes.get(self.at..self.at.checked_add(n)?)?;
            self.at += n;
            Some(piece)
        }

        fn number(&mut self) -> Option<usize> {
            usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().ok()?)).ok()
        }

        fn text(&mut self) -> Option<String> {
            let len = self.number()?;
            Some(String::from_utf8_lossy(self.take(len)?).into_owned())
        }
    }

    /// Reads what [`encode`] or [`failure`] wrote; `None` when cut short.
    fn decode(path: &Path, bytes: &[u8]) -> Option<Result<NeuroxActivations>> {
        let mut c = Cursor { bytes, at: 0 };
        if c.take(1)?[0] == 1 {
            return Some(Err(Error::input(c.text()?)));
        }
        let n_layers = c.number()?;
        let layers = c
            .take(n_layers.checked_mul(4)?)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let hidden = c.number()?;
        let n_sentences = c.number()?;
        let mut sentences = Vec::new();
        for _ in 0..n_sentences {
            let n_tokens = c.number()?;
            let tokens = (0..n_tokens)
                .map(|_| c.text())
                .collect::<Option<Vec<_>>>()?;
            let (rows, cols) = (c.number()?, c.number()?);
            let values = c
                .take(rows.checked_mul(cols)?.checked_mul(4)?)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            let values = Array2::from_shape_vec((rows, cols), values).ok()?;
            sentences.push(SentenceActivations { tokens, values });
        }
        Some(Ok(NeuroxActivations {
            path: path.to_path_buf(),
            layers,
            hidden,
            sentences,
        }))
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-hdf5",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor(), export::descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_stored_order() {
        let e = ordered_entries(r#"{"b": "1", "a": "0", "b (Occurrence 2)": "2"}"#).unwrap();
        let names: Vec<&str> = e.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(names, ["1", "0", "2"]);
        assert_eq!(sentence_text("The cat (Occurrence 2)"), "The cat");
        assert_eq!(sentence_text("A (b)"), "A (b)");
    }
}
