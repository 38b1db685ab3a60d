//! Scheme files on disk: one file, or a directory of them (every `*.toml` not starting
//! with `.` nor ending in `~`), and a file's version.

use super::file::{SchemeError, parse};
use super::{BuiltinOptions, Scheme};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads one scheme file. `connectors` are the WDT accounts a scheme may name.
pub fn load_file(
    path: &Path,
    options: &BuiltinOptions,
    connectors: &[String],
) -> Result<Scheme, Vec<SchemeError>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![SchemeError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse(path, &bytes, options, connectors)
}

/// Reads every scheme file of a directory (`*.toml`, not starting with `.` nor ending in
/// `~`): all of them, or every error of every file.
pub fn load_dir(
    dir: &Path,
    options: &BuiltinOptions,
    connectors: &[String],
) -> Result<Vec<Scheme>, Vec<SchemeError>> {
    let whole = |message: String| {
        vec![SchemeError {
            file: dir.to_owned(),
            line: 0,
            column: 0,
            message,
        }]
    };
    let files = files_in(dir).map_err(|e| whole(format!("cannot read: {e}")))?;
    let mut schemes: Vec<Scheme> = Vec::new();
    let mut errors = Vec::new();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        match load_file(&file, options, connectors) {
            Ok(scheme) => {
                if let Some(first) = ids.get(&scheme.id) {
                    errors.push(SchemeError {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "id {:?} is also the id of {}: ids must be unique",
                            scheme.id,
                            first.display()
                        ),
                    });
                } else {
                    ids.insert(scheme.id.clone(), file.clone());
                    schemes.push(scheme);
                }
            }
            Err(mut file_errors) => errors.append(&mut file_errors),
        }
    }
    if errors.is_empty() {
        Ok(schemes)
    } else {
        Err(errors)
    }
}

/// The scheme files of a directory, in name order.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_scheme_file(path))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a directory entry is a scheme file.
pub fn is_scheme_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    path.is_file() && name.ends_with(".toml") && !name.starts_with('.') && !name.ends_with('~')
}

/// The version of a scheme file: the first 12 hex digits of the SHA-256 of its bytes.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
