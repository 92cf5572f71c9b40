//! Walking a YAML document with key paths, so every error names the key.

use super::ConfigError;
use serde_yaml::Value;

/// A value and where it sits (`github.bot.mention_trigger`).
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub path: &'a str,
}

/// A mapping whose keys were checked.
pub(crate) struct Map<'a> {
    entries: Vec<(String, &'a Value)>,
    paths: Vec<String>,
}

/// `parent.key`, quoting keys that are not plain identifiers
/// (`hooks.pre."branch.create"`).
pub(crate) fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let segment = if plain {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        segment
    } else {
        format!("{parent}.{segment}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// What kind of value this is, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A scalar as text: strings, and numbers (a login such as `12345` parses as one).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Node<'a> {
    pub fn new(value: &'a Value, path: &'a str) -> Self {
        Node { value, path }
    }

    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.path, reason)
    }

    fn expected(&self, what: &str) -> ConfigError {
        self.error(format!("expected {what}, found {}", kind(self.value)))
    }

    /// The mapping, with keys outside `allowed` rejected as unknown.
    pub fn map(&self, allowed: &[&str]) -> Result<Map<'a>, ConfigError> {
        self.map_with(allowed, |_| {
            format!("unknown key (expected one of: {})", allowed.join(", "))
        })
    }

    /// The mapping, with keys outside `allowed` rejected with `reason(key)`.
    pub fn map_with(
        &self,
        allowed: &[&str],
        reason: impl Fn(&str) -> String,
    ) -> Result<Map<'a>, ConfigError> {
        let Value::Mapping(mapping) = self.value else {
            return Err(self.expected("a mapping"));
        };
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            let Some(key) = scalar_text(key) else {
                return Err(self.error(format!("keys must be strings, found {}", kind(key))));
            };
            if !allowed.contains(&key.as_str()) {
                return Err(ConfigError::invalid(join(self.path, &key), reason(&key)));
            }
            entries.push((key, value));
        }
        let paths = entries.iter().map(|(k, _)| join(self.path, k)).collect();
        Ok(Map { entries, paths })
    }

    /// Every entry of a mapping whose keys are free-form (checked by the caller).
    pub fn entries(&self) -> Result<Vec<(String, String, &'a Value)>, ConfigError> {
        let Value::Mapping(mapping) = self.value else {
            return Err(self.expected("a mapping"));
        };
        let mut out = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            let Some(key) = scalar_text(key) else {
                return Err(self.error(format!("keys must be strings, found {}", kind(key))));
            };
            let path = join(self.path, &key);
            out.push((key, path, value));
        }
        Ok(out)
    }

    pub fn bool(&self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.expected("true or false"))
    }

    pub fn u64(&self) -> Result<u64, ConfigError> {
        match self.value {
            Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
            Value::Number(n) if n.is_i64() => Err(self.error("must not be negative")),
            _ => Err(self.expected("a whole number")),
        }
    }

    /// A whole number in `min..=max`.
    pub fn u64_in(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = self.u64()?;
        if n < min || n > max {
            return Err(self.error(format!("must be between {min} and {max}, found {n}")));
        }
        Ok(n)
    }

    pub fn string(&self) -> Result<String, ConfigError> {
        scalar_text(self.value).ok_or_else(|| self.expected("a string"))
    }

    /// A string that is not empty (after trimming; returned trimmed).
    pub fn non_empty_string(&self) -> Result<String, ConfigError> {
        let s = self.string()?;
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(trimmed.to_string())
    }

    /// A scalar as text, booleans included (environment values).
    pub fn any_scalar(&self) -> Result<String, ConfigError> {
        match self.value {
            Value::Bool(b) => Ok(b.to_string()),
            other => scalar_text(other).ok_or_else(|| self.expected("a string")),
        }
    }

    /// A list of non-empty strings; each is passed to `check` with its path.
    pub fn string_list(
        &self,
        mut check: impl FnMut(&str, String) -> Result<String, ConfigError>,
    ) -> Result<Vec<String>, ConfigError> {
        let Value::Sequence(items) = self.value else {
            return Err(self.expected("a list"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = index(self.path, i);
            let node = Node::new(item, &path);
            let s = node.non_empty_string()?;
            out.push(check(&path, s)?);
        }
        Ok(out)
    }

    /// The items of a list, with their paths.
    pub fn items(&self) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        let Value::Sequence(items) = self.value else {
            return Err(self.expected("a list"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| (index(self.path, i), item))
            .collect())
    }
}

impl<'a> Map<'a> {
    /// The value under `key` with its path; `None` when absent or null (a
    /// null value means "use the default").
    pub fn get(&self, key: &str) -> Option<Node<'_>> {
        self.entries
            .iter()
            .zip(&self.paths)
            .find(|((k, v), _)| k == key && !v.is_null())
            .map(|((_, v), path)| Node::new(v, path))
    }
}
