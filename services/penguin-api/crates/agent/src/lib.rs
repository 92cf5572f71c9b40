//! The Penguin coding agent.
//!
//! - [`config`]: the `security` section of `.penguin/config.yml` and the
//!   [`SecurityPolicy`] every tool call goes through.
//! - [`tools`]: the tools the model may call ([`ToolRegistry`]).
//! - [`runner`]: where `run_command` runs ([`LocalRunner`], [`DockerRunner`],
//!   and in production [`remote_runner::RemoteRunner`], in penguin-runner).
//! - [`agent`]: the loop that drives a [`penguin_llm::ChatModel`] ([`run_agent`]).

pub mod agent;
pub mod config;
pub mod remote_runner;
pub mod runner;
pub mod tools;

pub use agent::{
    run_agent, strip_hidden, AgentEvent, AgentOutcome, OutcomeStatus, TaskSpec, MAX_ITERATIONS_CAP,
    TIME_LIMIT_CAP,
};
pub use config::{
    Capabilities, Capability, ConfigError, Decision, Mode, PolicyDenied, SecurityPolicy,
    ALWAYS_DENIED_GLOBS,
};
pub use runner::{
    docker_run_args, CommandOutput, CommandRunner, DockerRunner, LocalRunner, RunnerError,
    RunnerFactory, RunnerKind, MAX_OUTPUT_BYTES,
};
pub use tools::{
    is_workflow, ActionResult, ActionStatus, ToolRegistry, MAX_LIST_ENTRIES, MAX_READ_BYTES,
    READ_WINDOW_LINES,
};
