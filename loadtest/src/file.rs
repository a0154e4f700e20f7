//! Input files (a scenario, the planner's `costs.json`, `measured.json` and
//! profile): one error type naming the file and, for a bad value, the field.

use std::path::Path;

/// Why an input file of the planner cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("{path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not JSON or TOML of the expected shape (an unknown key, a
    /// missing one).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's explanation (line, column, field).
        message: String,
    },
    /// A field holds a value the model cannot use.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `sizes[1].accept_cpu_ms` or `destination[2].share`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl FileError {
    /// [`FileError::Parse`] for `path`.
    pub fn parse(path: &Path, message: impl std::fmt::Display) -> Self {
        Self::Parse {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// [`FileError::Invalid`] for `field` of `path`.
    pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.display().to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The text of `path`.
///
/// # Errors
/// [`FileError::Read`].
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|cause| FileError::Read {
        path: path.display().to_string(),
        cause,
    })
}
