//! Environment overrides: `ESTAFETTE_<SECTION>__<KEY>=value` sets one scalar
//! setting of the file, so that one ConfigMap serves every pod of a
//! StatefulSet (each pod sets `ESTAFETTE_CLUSTER__NAME` from its own name).
//!
//! The rules, chosen so that a typo fails loudly instead of being ignored:
//! - the name after the prefix is the dotted path with `__` for the dot, in
//!   any case: `ESTAFETTE_NODE__NODE_ID`, `ESTAFETTE_LIMITS__MAX_RECIPIENTS`;
//!   a number indexes a list of tables: `ESTAFETTE_LISTENER__0__ADDRESS`;
//! - the section (or list entry) must exist in the file: an override never
//!   creates a section, and a variable for a missing one is an error;
//! - only scalars are set: a value replacing a table or a list is an error;
//! - the value is a TOML integer, float or boolean when it reads as one and the
//!   file's value (if any) is not a string; otherwise it is a string;
//! - `ESTAFETTE_LOG` and other names without `__` are not settings and are
//!   left alone (they are the binary's own variables).

use super::{ConfigError, PREFIX};

/// Applies every `ESTAFETTE_*__*` variable of `vars` to the parsed file
/// `root` (a table); returns the dotted keys set, for the log.
///
/// # Errors
/// [`ConfigError::Env`] naming the variable and what is wrong with it.
pub(super) fn apply(
    root: &mut toml::Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut set = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && k.contains("__"))
        .collect();
    // Deterministic order, so that the log and any error are the same each start.
    vars.sort();
    for (var, value) in vars {
        let path: Vec<String> = var[PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        let fail = |reason: String| ConfigError::Env {
            var: var.clone(),
            reason,
        };
        if path.iter().any(String::is_empty) {
            return Err(fail("empty key (a doubled or trailing `__`)".into()));
        }
        let (key, parents) = path.split_last().ok_or_else(|| fail("no key".into()))?;
        let mut here = &mut *root;
        for (i, part) in parents.iter().enumerate() {
            let walked = parents[..=i].join(".");
            here = step(here, part).map_err(|r| fail(format!("{walked}: {r}")))?;
        }
        let dotted = path.join(".");
        let table = match here {
            toml::Value::Table(t) => t,
            toml::Value::Array(_) => {
                return Err(fail(format!(
                    "{}: is a list: add its index (`__0__`)",
                    parents.join(".")
                )))
            }
            _ => return Err(fail(format!("{}: is a value, not a section", parents.join(".")))),
        };
        let new = match table.get(key.as_str()) {
            Some(toml::Value::Table(_) | toml::Value::Array(_)) => {
                return Err(fail(format!("{dotted} is a section or a list, not a single value")))
            }
            Some(toml::Value::String(_)) => toml::Value::String(value),
            _ => scalar(value),
        };
        table.insert(key.clone(), new);
        set.push(dotted);
    }
    Ok(set)
}

/// One step down: a section of a table, or an entry of a list by its index.
fn step<'a>(here: &'a mut toml::Value, part: &str) -> Result<&'a mut toml::Value, String> {
    match here {
        toml::Value::Table(t) => match t.get_mut(part) {
            Some(v @ (toml::Value::Table(_) | toml::Value::Array(_))) => Ok(v),
            Some(_) => Err("is a value, not a section".into()),
            None => Err("no such section in the file (an override never creates one)".into()),
        },
        toml::Value::Array(list) => {
            let len = list.len();
            let index: usize = part
                .parse()
                .map_err(|_| format!("{part:?} is not an index of a list of {len}"))?;
            list.get_mut(index)
                .ok_or_else(|| format!("index {index} past the list's {len} entries"))
        }
        _ => Err("is a value, not a section".into()),
    }
}

/// A number, a boolean, or else the text itself.
fn scalar(value: String) -> toml::Value {
    match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
            _ => toml::Value::String(value),
        },
        Err(_) => toml::Value::String(value),
    }
}
