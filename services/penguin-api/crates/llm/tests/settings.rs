//! `LlmSettings::from_vars`.

use std::collections::HashMap;
use std::time::Duration;

use penguin_llm::LlmSettings;

fn read(vars: &[(&str, &str)]) -> Result<Option<LlmSettings>, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    LlmSettings::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn nothing_configured_is_none() {
    assert_eq!(read(&[]), Ok(None));
    assert_eq!(read(&[("PENGUIN_DEFAULT_MODEL", "m")]), Ok(None));
    assert_eq!(
        read(&[("PENGUIN_LLM_BASE_URL", "  "), ("OPENAI_API_KEY", "")]),
        Ok(None)
    );
}

#[test]
fn explicit_base_url_and_key() {
    let settings = read(&[
        ("PENGUIN_LLM_BASE_URL", "http://127.0.0.1:11434/v1/"),
        ("PENGUIN_LLM_API_KEY", "sk-explicit"),
        ("OPENAI_API_KEY", "sk-openai"),
        ("PENGUIN_DEFAULT_MODEL", "qwen2.5-coder"),
        ("PENGUIN_LLM_TIMEOUT_SECS", "30"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        settings,
        LlmSettings {
            base_url: "http://127.0.0.1:11434/v1".into(),
            api_key: Some("sk-explicit".into()),
            default_model: "qwen2.5-coder".into(),
            timeout: Duration::from_secs(30),
        }
    );
}

#[test]
fn base_url_without_key_is_a_keyless_provider() {
    let settings = read(&[
        ("PENGUIN_LLM_BASE_URL", "http://localhost:8000/v1"),
        ("PENGUIN_DEFAULT_MODEL", "llama"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(settings.api_key, None);
    assert_eq!(settings.timeout, Duration::from_secs(120));
}

#[test]
fn openai_key_alone_means_openai() {
    let settings = read(&[
        ("OPENAI_API_KEY", "sk-openai"),
        ("PENGUIN_DEFAULT_MODEL", "gpt-4o-mini"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(settings.base_url, "https://api.openai.com/v1");
    assert_eq!(settings.api_key.as_deref(), Some("sk-openai"));
}

#[test]
fn openrouter_key_alone_means_openrouter() {
    let settings = read(&[
        ("OPENROUTER_API_KEY", "sk-or-1"),
        ("PENGUIN_DEFAULT_MODEL", "openai/gpt-4o-mini"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(settings.base_url, "https://openrouter.ai/api/v1");
    assert_eq!(settings.api_key.as_deref(), Some("sk-or-1"));
}

#[test]
fn openai_key_wins_over_openrouter_key() {
    let settings = read(&[
        ("OPENAI_API_KEY", "sk-openai"),
        ("OPENROUTER_API_KEY", "sk-or-1"),
        ("PENGUIN_DEFAULT_MODEL", "m"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(settings.base_url, "https://api.openai.com/v1");
    assert_eq!(settings.api_key.as_deref(), Some("sk-openai"));
}

#[test]
fn a_provider_needs_a_default_model() {
    let error = read(&[("OPENAI_API_KEY", "sk-openai-secret")]).unwrap_err();
    assert!(error.contains("PENGUIN_DEFAULT_MODEL"), "{error}");
    assert!(!error.contains("sk-openai-secret"), "{error}");
}

#[test]
fn bad_values_are_named() {
    let error = read(&[
        ("PENGUIN_LLM_BASE_URL", "localhost:11434"),
        ("PENGUIN_DEFAULT_MODEL", "m"),
    ])
    .unwrap_err();
    assert!(error.contains("PENGUIN_LLM_BASE_URL"), "{error}");

    for bad in ["0", "-5", "soon", "1.5"] {
        let error = read(&[
            ("OPENAI_API_KEY", "sk-secret-value"),
            ("PENGUIN_DEFAULT_MODEL", "m"),
            ("PENGUIN_LLM_TIMEOUT_SECS", bad),
        ])
        .unwrap_err();
        assert!(error.contains("PENGUIN_LLM_TIMEOUT_SECS"), "{error}");
        assert!(!error.contains("sk-secret-value"), "{error}");
    }
}

#[test]
fn debug_redacts_the_key() {
    let settings = read(&[
        ("PENGUIN_LLM_API_KEY", "sk-very-secret"),
        ("PENGUIN_LLM_BASE_URL", "https://example.test/v1"),
        ("PENGUIN_DEFAULT_MODEL", "m"),
    ])
    .unwrap()
    .unwrap();
    let shown = format!("{settings:?} {settings:#?}");
    assert!(!shown.contains("sk-very-secret"), "{shown}");
    assert!(shown.contains("[redacted]"));
    assert!(shown.contains("https://example.test/v1"));

    let keyless = LlmSettings::new("http://h/v1/", "m");
    assert_eq!(keyless.base_url, "http://h/v1");
    assert!(format!("{keyless:?}").contains("api_key: None"));
}
