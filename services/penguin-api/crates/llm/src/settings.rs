//! Where the model provider is and how to authenticate to it.

use std::fmt;
use std::time::Duration;

/// API base used when only `OPENAI_API_KEY` is set.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// API base used when only `OPENROUTER_API_KEY` is set.
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// Request deadline when `PENGUIN_LLM_TIMEOUT_SECS` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Connection settings of an OpenAI-compatible provider.
///
/// `Debug` never shows the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct LlmSettings {
    /// API base including the version, e.g. `https://openrouter.ai/api/v1`; the client appends
    /// `/chat/completions` and `/models`. No trailing slash.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Model used when a request names none.
    pub default_model: String,
    /// For `complete()` and `models()`: deadline of the whole request. For `stream()`: deadline
    /// to the response headers, and then between two received pieces of the body.
    pub timeout: Duration,
}

impl fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("default_model", &self.default_model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LlmSettings {
    /// Settings for `base_url` (a trailing `/` is removed) with `default_model`, no key and the
    /// default timeout.
    pub fn new(base_url: impl Into<String>, default_model: impl Into<String>) -> Self {
        LlmSettings {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            default_model: default_model.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads the settings from the process environment; see [`LlmSettings::from_vars`].
    /// Each key may also come from the file `<variable>_FILE` names.
    pub fn from_env() -> Result<Option<LlmSettings>, String> {
        let mut keys = Vec::new();
        for name in [
            "PENGUIN_LLM_API_KEY",
            "OPENAI_API_KEY",
            "OPENROUTER_API_KEY",
        ] {
            keys.push((name, penguin_config::secret_var(name)?));
        }
        Self::from_vars(|name| match keys.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => value.clone(),
            None => std::env::var(name).ok(),
        })
    }

    /// Reads the settings through `var` (a variable's value, `None` when unset):
    ///
    /// - `PENGUIN_LLM_BASE_URL`: the API base (`http://` or `https://`, including `/v1`);
    /// - `PENGUIN_LLM_API_KEY`, else `OPENAI_API_KEY`, else `OPENROUTER_API_KEY`: the key;
    /// - `PENGUIN_DEFAULT_MODEL`: required once a provider is configured;
    /// - `PENGUIN_LLM_TIMEOUT_SECS`: whole seconds, default 120.
    ///
    /// Returns `Ok(None)` when neither a base URL nor a key is set (no provider). Without a base
    /// URL the base is OpenRouter's when the key came from `OPENROUTER_API_KEY`, else OpenAI's.
    /// Empty or blank values count as unset. Error messages name the variable and never contain
    /// the key.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<LlmSettings>, String> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let base_url = get("PENGUIN_LLM_BASE_URL");
        let (api_key, key_source) = match [
            "PENGUIN_LLM_API_KEY",
            "OPENAI_API_KEY",
            "OPENROUTER_API_KEY",
        ]
        .into_iter()
        .find_map(|name| get(name).map(|key| (key, name)))
        {
            Some((key, name)) => (Some(key), Some(name)),
            None => (None, None),
        };
        if base_url.is_none() && api_key.is_none() {
            return Ok(None);
        }

        let base_url = match base_url {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "PENGUIN_LLM_BASE_URL must start with http:// or https:// (got {url:?})"
                    ));
                }
                url.trim_end_matches('/').to_string()
            }
            None if key_source == Some("OPENROUTER_API_KEY") => OPENROUTER_BASE_URL.to_string(),
            None => OPENAI_BASE_URL.to_string(),
        };
        let default_model = get("PENGUIN_DEFAULT_MODEL").ok_or_else(|| {
            "PENGUIN_DEFAULT_MODEL must be set when a model provider is configured \
             (PENGUIN_LLM_BASE_URL or an API key)"
                .to_string()
        })?;
        let timeout = match get("PENGUIN_LLM_TIMEOUT_SECS") {
            None => DEFAULT_TIMEOUT,
            Some(secs) => match secs.parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(format!(
                        "PENGUIN_LLM_TIMEOUT_SECS must be a positive whole number of seconds \
                         (got {secs:?})"
                    ))
                }
            },
        };
        Ok(Some(LlmSettings {
            base_url,
            api_key,
            default_model,
            timeout,
        }))
    }
}
