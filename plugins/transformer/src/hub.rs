//! Where a model's files are: a local directory, or a Hugging Face model id
//! looked up in the local Hugging Face cache (never the network).

use std::path::{Path, PathBuf};

use lca_core::{Error, Result};

/// The files of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    /// The folder they are in.
    pub dir: PathBuf,
    /// `config.json` (the GGUF file for GGUF models).
    pub config: PathBuf,
    /// `model.safetensors` or `pytorch_model.bin` (or the GGUF file).
    pub weights: PathBuf,
    /// `tokenizer.json` (or the GGUF file).
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// True for one GGUF file holding configuration, tokenizer and weights.
    pub fn is_gguf(&self) -> bool {
        self.weights.extension().is_some_and(|e| e == "gguf")
    }

    /// Every file holding weights: the one weights file, or each shard an
    /// index (`model.safetensors.index.json`) names, in name order.
    ///
    /// # Errors
    /// When the index cannot be read, or names a shard that is missing.
    pub fn weight_files(&self) -> Result<Vec<PathBuf>> {
        if !self
            .weights
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".index.json"))
        {
            return Ok(vec![self.weights.clone()]);
        }
        let text = std::fs::read_to_string(&self.weights)
            .map_err(|e| Error::io("read", &self.weights, e))?;
        let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(&self.weights, Some(e.line()), format!("is not JSON: {e}"))
        })?;
        let map = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(&self.weights, None, "has no `weight_map` object"))?;
        let mut shards: Vec<String> = Vec::new();
        for file in map.values() {
            let name = file
                .as_str()
                .filter(|n| !n.contains('/') && !n.contains('\\') && *n != "..")
                .ok_or_else(|| {
                    Error::format(
                        &self.weights,
                        None,
                        format!("names a shard {file} that is not a file name"),
                    )
                })?;
            if !shards.iter().any(|s| s == name) {
                shards.push(name.to_string());
            }
        }
        shards.sort();
        shards
            .into_iter()
            .map(|name| {
                let path = self.dir.join(&name);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(Error::format(
                        &self.weights,
                        None,
                        format!(
                            "names the shard {name}, which is not in {}",
                            self.dir.display()
                        ),
                    ))
                }
            })
            .collect()
    }

    /// A GGUF file's model.
    fn gguf(path: &Path) -> Self {
        ModelFiles {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            config: path.to_path_buf(),
            weights: path.to_path_buf(),
            tokenizer: path.to_path_buf(),
        }
    }
}

const HOW_TO_GET: &str = "Download it with `huggingface-cli download <id>` on a machine with network \
     access (and copy ~/.cache/huggingface), point `model` at a folder holding config.json, \
     model.safetensors (or pytorch_model.bin) and tokenizer.json, or at a .gguf file, or, for \
     all-MiniLM-L6-v2 and SmolLM2-135M, run scripts/fetch-assets.sh";

/// The files of the model at `dir`: a Hugging Face folder, a `.gguf` file,
/// or a folder holding one `.gguf` file and no `config.json`.
///
/// # Errors
/// When the folder or one of the files is missing, saying which and how to
/// get them.
pub fn from_dir(dir: &Path) -> Result<ModelFiles> {
    if dir.is_file() && dir.extension().is_some_and(|e| e == "gguf") {
        return Ok(ModelFiles::gguf(dir));
    }
    if dir.is_dir() && !dir.join("config.json").exists() {
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io("list", dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        ggufs.sort();
        match ggufs.as_slice() {
            [one] => return Ok(ModelFiles::gguf(one)),
            [] => {}
            many => {
                return Err(Error::input(format!(
                    "model folder {} holds {} GGUF files; point `model` at one of them",
                    dir.display(),
                    many.len()
                )));
            }
        }
    }
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "model folder {} does not exist. {HOW_TO_GET}.",
            dir.display()
        )));
    }
    let need = |name: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::input(format!(
                "model folder {} has no {name}. {HOW_TO_GET}.",
                dir.display()
            )))
        }
    };
    let weights = [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ]
    .iter()
    .map(|n| dir.join(n))
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Error::input(format!(
            "model folder {} has neither model.safetensors (or sharded safetensors with \
             model.safetensors.index.json) nor pytorch_model.bin. {HOW_TO_GET}.",
            dir.display()
        ))
    })?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        config: need("config.json")?,
        weights,
        tokenizer: need("tokenizer.json")?,
    })
}

/// The Hugging Face cache folders to search, in order: `$HF_HUB_CACHE`,
/// `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
/// `~/.cache/huggingface/hub`.
pub fn cache_roots() -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut roots = Vec::new();
    roots.extend(var("HF_HUB_CACHE"));
    roots.extend(var("HF_HOME").map(|h| h.join("hub")));
    roots.extend(var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")));
    roots.extend(var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")));
    roots.dedup();
    roots
}

/// The snapshot of `id` at `revision` (a branch such as `main`, or a commit
/// hash) in one of `roots`, laid out as the Hugging Face cache does:
/// `models--org--name/refs/<branch>` holds a commit hash and
/// `models--org--name/snapshots/<hash>/` the files.
///
/// # Errors
/// When no root holds it, listing every folder searched.
pub fn from_cache(id: &str, revision: &str, roots: &[PathBuf]) -> Result<ModelFiles> {
    if id.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(Error::input(format!(
            "`{id}` is not a Hugging Face model id (expected `name` or `org/name`)"
        )));
    }
    let folder = format!("models--{}", id.replace('/', "--"));
    let mut searched = Vec::new();
    for root in roots {
        let repo = root.join(&folder);
        let commit = std::fs::read_to_string(repo.join("refs").join(revision))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| revision.to_string());
        let snapshot = repo.join("snapshots").join(&commit);
        searched.push(snapshot.clone());
        if snapshot.is_dir() {
            return from_dir(&snapshot);
        }
    }
    let list = searched
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n");
    Err(Error::input(format!(
        "model `{id}` (revision {revision}) is not in the local Hugging Face cache; lca never \
         downloads. Searched:\n{list}\n{}.",
        HOW_TO_GET.replace("<id>", id)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::write(dir.join(name), b"{}").unwrap();
        }
    }

    #[test]
    fn a_cached_snapshot_is_found_through_its_ref() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--tiny");
        model_dir(&repo.join("snapshots").join("abc123"));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        let files = from_cache(
            "org/tiny",
            "main",
            &[PathBuf::from("/nonexistent"), root.path().into()],
        )
        .unwrap();
        assert!(files.dir.ends_with("snapshots/abc123"));
        assert!(files.weights.ends_with("model.safetensors"));
        // A commit hash works too.
        assert!(from_cache("org/tiny", "abc123", &[root.path().into()]).is_ok());
    }

    #[test]
    fn a_missing_model_says_where_it_looked_and_how_to_get_it() {
        let root = tempfile::tempdir().unwrap();
        let err = from_cache("org/absent", "main", &[root.path().into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("models--org--absent/snapshots/main"), "{err}");
        assert!(err.contains("huggingface-cli download org/absent"), "{err}");
        assert!(from_cache("../etc", "main", &[root.path().into()]).is_err());
    }

    #[test]
    fn a_gguf_file_or_a_folder_of_one_is_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.Q4_0.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        for path in [file.as_path(), dir.path()] {
            let files = from_dir(path).unwrap();
            assert!(files.is_gguf());
            assert_eq!(files.weights, file);
            assert_eq!(files.tokenizer, file);
        }
        std::fs::write(dir.path().join("other.gguf"), b"GGUF").unwrap();
        let err = from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("2 GGUF files"), "{err}");
    }

    #[test]
    fn a_folder_without_weights_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        let err = from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("neither model.safetensors") && err.contains("nor pytorch_model.bin"),
            "{err}"
        );
        let err = from_dir(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("fetch-assets"),
            "{err}"
        );
    }
}
