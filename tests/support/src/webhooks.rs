//! GitHub's public webhook examples (`fixtures/webhooks`, from
//! `@octokit/webhooks-examples` 7.6.1, MIT): every payload for the ingress
//! tests, single examples for the bot tests to retarget.

use serde_json::Value;
use std::sync::OnceLock;

/// Every example as `(event, payload)`, `event` being the `X-GitHub-Event`
/// value. The file is parsed once per test binary.
pub fn all() -> &'static [(String, Value)] {
    static EXAMPLES: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let path = crate::fixture("webhooks/api.github.com.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fixture {} is required: {e}", path.display()));
        let events: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()));
        events
            .iter()
            .flat_map(|event| {
                let name = event["name"].as_str().expect("an event name").to_string();
                event["examples"]
                    .as_array()
                    .expect("an examples array")
                    .iter()
                    .map(move |payload| (name.clone(), payload.clone()))
            })
            .collect()
    })
}

/// The first example of `event` whose `action` is `action`, cloned so that
/// the caller can retarget it. Panics naming the pair when there is none.
pub fn example(event: &str, action: &str) -> Value {
    all()
        .iter()
        .find(|(name, payload)| name == event && payload["action"] == action)
        .map(|(_, payload)| payload.clone())
        .unwrap_or_else(|| panic!("no {event}.{action} example in the fixtures"))
}
