//! The one error type of `lca-core`.
//!
//! Every message is a single readable paragraph that names what went wrong,
//! where (component, parameter, file, line) and, where one exists, the fix.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::kind::{ComponentKind, Origin};

/// Convenient alias used throughout the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `lca-core` and in the components it runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A component parameter has a bad value.
    #[error("{component}: parameter `{param}` = {value} is not allowed; expected {expected}")]
    InvalidParam {
        /// Component name, such as `synthetic`.
        component: String,
        /// Parameter name.
        param: String,
        /// The offending value, as written.
        value: String,
        /// The allowed range or form.
        expected: String,
    },
    /// Input data a component cannot work with: one class, NaN values, empty data.
    #[error("{0}")]
    InvalidInput(String),
    /// Two things that must agree in size do not.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// What was being checked.
        what: String,
        /// The size that was required.
        expected: String,
        /// The size that was seen.
        found: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted (`read`, `write`, `create directory`).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// A write failed because the disk (or quota) is full.
    #[error(
        "disk full: cannot {action} {}{}: there is no space left on the device that holds it; \
         free some space there or write to another folder",
        path.display(),
        needed.map(|n| format!(" ({} needed)", crate::units::human_bytes(n))).unwrap_or_default()
    )]
    DiskFull {
        /// What was attempted (`write`, `create directory`).
        action: &'static str,
        /// The file that could not be written.
        path: PathBuf,
        /// Bytes the write needed, when known.
        needed: Option<u64>,
    },
    /// A file's contents are malformed.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the problem has one.
        line: Option<usize>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No component of this kind has this name.
    #[error("{}", unknown_component_message(*kind, name, known))]
    UnknownComponent {
        /// The kind that was looked up.
        kind: ComponentKind,
        /// The name that was asked for.
        name: String,
        /// Every name of this kind that is known, sorted.
        known: Vec<String>,
    },
    /// Two registrations claim the same component name.
    #[error(
        "{kind} `{name}` is provided twice: by {first} and by {second}; \
         remove one of them from the plugin search path or rename the component"
    )]
    DuplicateComponent {
        /// Kind of the component.
        kind: ComponentKind,
        /// The contested name.
        name: String,
        /// Who registered it first.
        first: Box<Origin>,
        /// Who tried to register it again.
        second: Box<Origin>,
    },
    /// A component returned something that breaks its contract.
    #[error("{component} returned an invalid result: {message}")]
    InvalidOutput {
        /// Which component (with its origin when it is a plugin).
        component: String,
        /// What is wrong with the result.
        message: String,
    },
    /// A component panicked; the panic was caught.
    #[error("{component} panicked: {message}")]
    Panicked {
        /// Which component (with its origin when it is a plugin).
        component: String,
        /// The panic payload and location.
        message: String,
    },
    /// The run was asked to stop (a time limit, Ctrl-C) and the component
    /// gave up part-way, as it should.
    #[error("stopped on request before it finished")]
    Cancelled,
    /// An error raised inside a named step of a run.
    #[error("{context}: {source}")]
    Context {
        /// Where it happened, such as `ranker \`corr\` (correlation)`.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
    /// A plugin could not be loaded or used.
    #[error("{0}")]
    Plugin(String),
    /// A recipe has one or more problems.
    #[error(transparent)]
    Recipe(#[from] RecipeErrors),
}

/// One problem found in a recipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecipeProblem {
    /// TOML path of the offending item, such as `ranker.corr.type`.
    pub at: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in one recipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecipeErrors {
    /// The recipe file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<RecipeProblem>,
}

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "recipe {} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(
                f,
                "\n  {}:{}:{}: {}: {}",
                self.file.display(),
                p.line,
                p.column,
                p.at,
                p.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for RecipeErrors {}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Wraps the error with the step it happened in.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Builds an [`Error::Io`], or an [`Error::DiskFull`] when the
    /// operating system says the disk or the quota is full.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        if is_storage_full(&source) {
            return Error::DiskFull {
                action,
                path: path.into(),
                needed: None,
            };
        }
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether this error, or the one it wraps, is a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self.root(), Error::DiskFull { .. })
    }

    /// Builds an [`Error::Format`].
    pub fn format(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// The innermost error, skipping [`Error::Context`] wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Adds the step context to a result's error.
pub trait ResultExt<T> {
    /// Wraps an error with a context computed only on failure.
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}

fn unknown_component_message(kind: ComponentKind, name: &str, known: &[String]) -> String {
    let mut message = format!("unknown {kind} type `{name}`");
    if let Some(best) = closest(name, known.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    if known.is_empty() {
        message.push_str(&format!(
            " No {kind} is available: check that the plugins are built (`cargo build --release`) \
             and on the plugin search path (`--plugin-dir`, LCA_PLUGIN_PATH)."
        ));
    } else {
        message.push_str(&format!(" Known {kind} types: {}.", known.join(", ")));
        message.push_str(
            " If it comes from a plugin, put the plugin's library (named lca_plugin_<name>) \
             in a folder given with `--plugin-dir`, in LCA_PLUGIN_PATH, or next to the `lca` \
             executable, or load it with `--plugin FILE`; `lca list` shows every component \
             found, with its origin.",
        );
    }
    message
}

/// The candidate closest to `name` by edit distance, if it is plausibly a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Formats a list of items as `a, b and c`.
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Whether an I/O error means "no space left": `ENOSPC` and `EDQUOT`
/// (a full quota reads the same to the user) on every platform Rust names.
fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_plainly_and_other_io_errors_are_not() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
            let err = Error::io("write", "/out/results.json", io::Error::from(kind));
            assert!(err.is_disk_full());
            assert!(
                err.to_string()
                    .starts_with("disk full: cannot write /out/results.json")
            );
            assert!(err.context("ranker `r`").is_disk_full());
        }
        let denied = Error::io(
            "write",
            "/out/results.json",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_disk_full());
        let sized = Error::DiskFull {
            action: "write",
            path: "/out/a.npz".into(),
            needed: Some(3 << 20),
        };
        assert!(sized.to_string().contains("(3.0 MiB needed)"), "{sized}");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("correlation", "corelation"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_suggests_only_plausible_names() {
        let names = ["correlation", "random"];
        assert_eq!(closest("corelation", names), Some("correlation"));
        assert_eq!(closest("randon", names), Some("random"));
        assert_eq!(closest("gaussian", names), None);
    }

    #[test]
    fn unknown_component_lists_known_names_and_suggests() {
        let err = Error::UnknownComponent {
            kind: ComponentKind::Ranker,
            name: "corelation".into(),
            known: vec!["correlation".into(), "random".into()],
        };
        let text = err.to_string();
        assert!(text.contains("did you mean `correlation`?"), "{text}");
        assert!(
            text.contains("Known ranker types: correlation, random."),
            "{text}"
        );
    }

    #[test]
    fn join_and_reads_naturally() {
        assert_eq!(join_and(&["a".into()]), "a");
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}
