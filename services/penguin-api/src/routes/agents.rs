//! `GET /api/v1/agents` and `GET /api/v1/agents/{id}`: this server runs one
//! agent, `default`, described in Penguin's roster shape from the running
//! configuration: the current model, the tools its registry offers and the
//! security policy's decisions.

use super::query_bool;
use crate::{
    error::{ApiError, ApiQuery},
    ids::{self, DEFAULT_AGENT},
    state::AppState,
};
use axum::{
    extract::{Path, State},
    Json,
};
use penguin_agent::config::{Capability, SecurityPolicy};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

/// The capabilities the policy decides, in the order they are listed.
const CAPABILITIES: [Capability; 4] = [
    Capability::RepoWrite,
    Capability::Shell,
    Capability::Network,
    Capability::Workflows,
];

/// `GET /agents` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Penguin's legacy shape `{"agents": [{agent_id, conversation_id}]}`
    /// (default false: the full roster, a JSON array).
    #[param(value_type = Option<bool>)]
    pub simple: Option<String>,
}

/// The policy as Penguin's clients read it: the mode, each capability's
/// decision after the mode, and the denied path globs.
fn policy_json(policy: &SecurityPolicy) -> (Value, Vec<Value>) {
    // The decisions are read to describe the agent, not for a tool call.
    let decisions: Vec<(Capability, &'static str)> =
        tracing::info_span!("describe_agent", agent = DEFAULT_AGENT).in_scope(|| {
            CAPABILITIES
                .iter()
                .map(|cap| (*cap, policy.decide(*cap).as_str()))
                .collect()
        });
    let mut capabilities = serde_json::Map::new();
    let mut rules = Vec::new();
    for (cap, decision) in &decisions {
        capabilities.insert(cap.as_str().into(), json!(decision));
        let pattern = match cap {
            Capability::Workflows => ".github/workflows/**",
            _ => "*",
        };
        rules.push(json!({ "permission": cap.as_str(), "pattern": pattern, "action": decision }));
    }
    for pattern in policy.denied_patterns() {
        rules.push(json!({ "permission": "path", "pattern": pattern, "action": "deny" }));
    }
    let policy = json!({
        "mode": policy.mode,
        "capabilities": capabilities,
        "denied_paths": policy.denied_patterns(),
    });
    (policy, rules)
}

/// The `default` agent's profile in Penguin's roster shape, plus `tools`,
/// `policy` and the iteration cap.
pub fn default_profile(state: &AppState) -> Value {
    let tools = state.tasks.tools();
    let specs = tools.specs();
    let (policy, permission) = policy_json(tools.policy());
    let model = state.model.as_ref().map(|model| {
        json!({
            "model": state.model_for(None),
            "provider": model.provider(),
        })
    });
    json!({
        "id": DEFAULT_AGENT,
        "persona": Value::Null,
        "persona_description": Value::Null,
        "persona_defined": false,
        "model": model,
        "default_tools": specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "tools": specs.iter().map(|s| json!({ "name": s.name, "description": s.description })).collect::<Vec<_>>(),
        "parent": Value::Null,
        "children": [],
        "active": true,
        "paused": false,
        "is_sub_agent": false,
        "system_prompt_preview": Value::Null,
        "permission": permission,
        "policy": policy,
        "max_iterations": state.settings.max_iterations,
        "agent_mode": "build",
        "options": {
            "agent_mode": "build",
            "supports_plan_mode": false,
            "can_persist_approval": false,
            "security_mode": policy["mode"],
            "security_enabled": true,
        },
    })
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(AgentsQuery),
    description = "The agents this server runs (one, `default`), as Penguin's roster: a JSON array of profiles (`id`, `model` `{model, provider}`, `default_tools`, `tools`, `permission`, `policy` `{mode, capabilities, denied_paths}`, `active`, `paused`, …). With `simple=true`, `{\"agents\": [{agent_id, conversation_id}]}` (the most recently active conversation).",
    responses((status = 200, description = "The agents", body = Object),
              (status = 400, description = "A bad `simple`", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AgentsQuery>,
) -> Result<Json<Value>, ApiError> {
    let simple = match query.simple.as_deref() {
        Some(raw) => query_bool("simple", raw)?,
        None => false,
    };
    if simple {
        let latest = state.store.list_conversations(1).await?.into_iter().next();
        return Ok(Json(json!({
            "agents": [{ "agent_id": DEFAULT_AGENT, "conversation_id": latest.map(|c| c.id) }]
        })));
    }
    Ok(Json(json!([default_profile(&state)])))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id (1-64 characters of `a-z 0-9 _ -`); this server runs `default`", pattern = "^[a-z0-9_-]{1,64}$", example = "default")),
    responses((status = 200, description = "The agent's profile (as in the roster)", body = Object),
              (status = 400, description = "Not an agent id (`INVALID_AGENT_ID`)", body = Object),
              (status = 404, description = "No such agent (`AGENT_NOT_FOUND`)", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ids::agent_id(&id)?;
    Ok(Json(default_profile(&state)))
}
