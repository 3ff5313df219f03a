//! Where a scenario says something ([`Origin`]) and what is wrong with it
//! ([`LoadError`], [`LoadErrors`]): every message names `file:line:col`.
//!
//! Positions are 1-based lines and columns, as editors count them. An
//! [`Origin`] is not part of a scenario's meaning: all origins compare equal,
//! so a scenario written back out with [`crate::scenario::to_yaml`] and loaded
//! again compares equal to the original although its text moved.

use std::cmp::Ordering;
use std::fmt;

/// A position in a scenario file (1-based line and column).
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin {
    pub line: u32,
    pub col: u32,
}

impl Origin {
    pub const fn new(line: u32, col: u32) -> Origin {
        Origin { line, col }
    }

    /// The position as a sortable key (origins themselves all compare equal).
    pub const fn key(self) -> (u32, u32) {
        (self.line, self.col)
    }
}

impl PartialEq for Origin {
    /// Always true: where a value was written is not part of its meaning.
    fn eq(&self, _other: &Origin) -> bool {
        true
    }
}
impl Eq for Origin {}
impl PartialOrd for Origin {
    fn partial_cmp(&self, other: &Origin) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Origin {
    fn cmp(&self, _other: &Origin) -> Ordering {
        Ordering::Equal
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Spanned<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Spanned<T> {
    pub const fn new(value: T, origin: Origin) -> Spanned<T> {
        Spanned { value, origin }
    }
}

impl Spanned<String> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// One mistake in one file. `origin` is `None` only for mistakes that have no
/// place in the file (it cannot be read, a directory holds no scenario).
#[derive(Clone, Debug, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    pub origin: Option<Origin>,
    pub message: String,
}

impl LoadError {
    pub fn at(file: &str, origin: Origin, message: impl Into<String>) -> LoadError {
        LoadError { file: file.to_owned(), origin: Some(origin), message: message.into() }
    }

    pub fn whole_file(file: &str, message: impl Into<String>) -> LoadError {
        LoadError { file: file.to_owned(), origin: None, message: message.into() }
    }

    fn sort_key(&self) -> (&str, u32, u32) {
        match self.origin {
            Some(origin) => (&self.file, origin.line, origin.col),
            None => (&self.file, 0, 0),
        }
    }
}

impl PartialEq for LoadError {
    /// Unlike [`Origin`]s alone, errors compare their positions too.
    fn eq(&self, other: &LoadError) -> bool {
        self.file == other.file
            && self.origin.map(Origin::key) == other.origin.map(Origin::key)
            && self.message == other.message
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Some(origin) => write!(f, "{}:{}:{}: {}", self.file, origin.line, origin.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every mistake found, sorted by file and position; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    pub errors: Vec<LoadError>,
}

impl LoadErrors {
    /// Sorts by file and position (stable: equal positions keep their order)
    /// and drops exact repeats.
    pub fn new(mut errors: Vec<LoadError>) -> LoadErrors {
        errors.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        errors.dedup_by(|a, b| a == b);
        LoadErrors { errors }
    }

    pub fn single(error: LoadError) -> LoadErrors {
        LoadErrors { errors: vec![error] }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &LoadError> {
        self.errors.iter()
    }

    /// The messages as displayed, one string per error.
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
