//! Who may make the bot act. Deny by default: a command runs only when the
//! configuration enables it and the actor is trusted for it.
//!
//! In order:
//! 1. Bots (`is_bot`, or a login ending in `[bot]`) are ignored silently, so
//!    the bot never answers itself or another App.
//! 2. A command missing from `enabled_commands` is denied.
//! 3. The actor must have `write`, `maintain` or `admin` permission on the
//!    repository, or be in `allowed_users`, or be in one of `allowed_teams`;
//!    read-only commands ([`Command::read_only`]) are also allowed for an
//!    `author_association` listed in `read_only_associations`. Otherwise
//!    denied, naming what is missing. (`author_association` alone never
//!    grants a write or `approve`.)
//! 4. Write commands ([`Command::writes`]) on pull requests from forks are
//!    denied unless the fork opted in or `allow_fork_prs` is set.
//! 5. Write commands on organisation-wide installations with
//!    `require_label` need `opt_in_label` on the issue or pull request
//!    ([`Decision::NeedsLabel`]). The fork rule comes first: a label
//!    cannot lift it, so asking for one would mislead.
//!
//! Logins, teams, labels, permissions and associations compare ignoring case.

use crate::command::Command;
use crate::config::BotConfig;

/// Who wrote the command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// GitHub login.
    pub login: String,
    /// `sender.type == "Bot"`.
    pub is_bot: bool,
    /// The comment's `author_association` (`OWNER`, `MEMBER`, …); not a
    /// permission check.
    pub association: String,
    /// From `GET /repos/{o}/{r}/collaborators/{login}/permission`:
    /// `admin`, `maintain`, `write`, `triage`, `read` or `none`; `None` when
    /// unknown (treated as no permission).
    pub permission: Option<String>,
    /// Teams the actor belongs to, in the form `allowed_teams` uses.
    pub teams: Vec<String>,
}

/// Where the command was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// A pull request rather than an issue.
    pub is_pull_request: bool,
    /// A pull request whose head is in a fork.
    pub from_fork: bool,
    /// The issue's or pull request's labels.
    pub labels: Vec<String>,
    /// The App is installed for a whole organisation (not a single
    /// repository or a user's account).
    pub org_wide_install: bool,
}

/// What to do with a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Do nothing and say nothing (bots); the reason is for logs.
    Ignore(String),
    /// Refuse; the reason can be shown to the actor.
    Deny(String),
    /// Write commands need this opt-in label first.
    NeedsLabel(String),
}

impl Decision {
    /// `allow`, `ignore`, `deny` or `needs_label`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ignore(_) => "ignore",
            Decision::Deny(_) => "deny",
            Decision::NeedsLabel(_) => "needs_label",
        }
    }

    /// Whether the command may run.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Permissions that allow every command.
const WRITE_PERMISSIONS: [&str; 3] = ["write", "maintain", "admin"];

/// Whether a collaborator permission (`admin`, `write`, …) allows every command.
pub fn grants_write(permission: &str) -> bool {
    WRITE_PERMISSIONS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(permission.trim()))
}

/// Whether `login` is trusted before any team lookup: write permission or
/// `allowed_users`. Team lookups cost a GitHub call, so they are made only
/// when this says no.
pub fn trusted_without_teams(config: &BotConfig, actor: &Actor) -> bool {
    let login = actor.login.trim();
    grants_write(actor.permission.as_deref().unwrap_or(""))
        || (!login.is_empty() && contains_ignore_case(&config.allowed_users, login))
}

fn contains_ignore_case(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(item))
}

/// Whether `command` by `actor` on `target` may run under `config`;
/// `fork_opt_in` says a fork pull request opted in (see the module
/// documentation). Every decision is logged at `info`.
pub fn decide(
    config: &BotConfig,
    command: &Command,
    actor: &Actor,
    target: &Target,
    fork_opt_in: bool,
) -> Decision {
    let decision = decide_quietly(config, command, actor, target, fork_opt_in);
    let reason = match &decision {
        Decision::Allow => "",
        Decision::Ignore(r) | Decision::Deny(r) | Decision::NeedsLabel(r) => r,
    };
    tracing::info!(
        login = %actor.login,
        command = command.name(),
        decision = decision.kind(),
        reason,
        "bot gate"
    );
    decision
}

fn decide_quietly(
    config: &BotConfig,
    command: &Command,
    actor: &Actor,
    target: &Target,
    fork_opt_in: bool,
) -> Decision {
    let name = command.name();
    let login = actor.login.trim();
    if actor.is_bot || login.to_ascii_lowercase().ends_with("[bot]") {
        return Decision::Ignore(format!("{login} is a bot"));
    }
    if !config.command_enabled(name) {
        return Decision::Deny(format!("the `{name}` command is not enabled here"));
    }

    let permission = actor.permission.as_deref().map(str::trim).unwrap_or("");
    let trusted = trusted_without_teams(config, actor)
        || actor
            .teams
            .iter()
            .any(|t| contains_ignore_case(&config.allowed_teams, t.trim()));
    let association = actor.association.trim();
    let read_only_ok = command.read_only()
        && !association.is_empty()
        && contains_ignore_case(&config.read_only_associations, association);
    if !trusted && !read_only_ok {
        let has = if permission.is_empty() {
            "unknown"
        } else {
            permission
        };
        let alternatives = if command.read_only() && !config.read_only_associations.is_empty() {
            format!(
                ", being in allowed_users or allowed_teams, or an author association among {}",
                config.read_only_associations.join(", ")
            )
        } else {
            ", or being in allowed_users or allowed_teams".to_string()
        };
        return Decision::Deny(format!(
            "`{name}` needs write permission on the repository{alternatives}; \
             @{login} has `{has}` permission"
        ));
    }

    if command.writes() {
        if target.from_fork && !(fork_opt_in || config.allow_fork_prs) {
            return Decision::Deny(format!(
                "`{name}` does not run on pull requests from forks here"
            ));
        }
        if config.require_label
            && target.org_wide_install
            && !contains_ignore_case(&target.labels, &config.opt_in_label)
        {
            return Decision::NeedsLabel(config.opt_in_label.clone());
        }
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 8] = [
        "review",
        "plan",
        "fix_tests",
        "fix",
        "summarize",
        "approve",
        "help",
        "question",
    ];

    fn command(name: &str) -> Command {
        match name {
            "review" => Command::Review { full: false },
            "plan" => Command::Plan,
            "fix_tests" => Command::FixTests,
            "fix" => Command::Fix("the bug".into()),
            "summarize" => Command::Summarize,
            "approve" => Command::Approve,
            "help" => Command::Help,
            "question" => Command::Question("why?".into()),
            other => panic!("{other}"),
        }
    }

    fn actor(permission: Option<&str>, association: &str) -> Actor {
        Actor {
            login: "alice".into(),
            is_bot: false,
            association: association.into(),
            permission: permission.map(Into::into),
            teams: Vec::new(),
        }
    }

    fn issue() -> Target {
        Target::default()
    }

    fn kind(d: &Decision) -> &'static str {
        d.kind()
    }

    #[test]
    fn bots_are_ignored_before_anything_else() {
        let config = BotConfig {
            allowed_users: vec!["penguin[bot]".into(), "renovate".into()],
            ..BotConfig::default()
        };
        for (login, is_bot) in [
            ("penguin[bot]", false),
            ("dependabot[bot]", false),
            ("Some-App[BOT]", false),
            ("renovate", true),
        ] {
            let a = Actor {
                login: login.into(),
                is_bot,
                permission: Some("admin".into()),
                association: "OWNER".into(),
                ..Actor::default()
            };
            for name in ALL {
                let d = decide(&config, &command(name), &a, &issue(), true);
                assert!(matches!(d, Decision::Ignore(_)), "{login} {name}: {d:?}");
            }
        }
        // `[bot]` must end the login.
        let a = Actor {
            login: "bot-fan".into(),
            permission: Some("write".into()),
            ..Actor::default()
        };
        assert_eq!(
            decide(
                &config,
                &Command::Review { full: false },
                &a,
                &issue(),
                false
            ),
            Decision::Allow
        );
    }

    #[test]
    fn disabled_commands_are_denied_naming_them() {
        let config = BotConfig {
            enabled_commands: vec!["review".into(), "help".into()],
            ..BotConfig::default()
        };
        let admin = actor(Some("admin"), "OWNER");
        for name in ALL {
            let d = decide(&config, &command(name), &admin, &issue(), false);
            if name == "review" || name == "help" {
                assert_eq!(d, Decision::Allow, "{name}");
            } else {
                match d {
                    Decision::Deny(reason) => {
                        assert!(reason.contains(&format!("`{name}`")), "{reason}");
                        assert!(reason.contains("not enabled"), "{reason}");
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
    }

    /// (permission, association, read_only_associations) → outcome for
    /// read-only commands, approve and write commands.
    #[test]
    fn permission_table() {
        let assoc = vec!["OWNER".to_string(), "MEMBER".into(), "COLLABORATOR".into()];
        #[allow(clippy::type_complexity)]
        let table: &[(Option<&str>, &str, bool, &str, &str, &str)] = &[
            // permission, association, associations configured, read-only, approve, write
            (Some("admin"), "NONE", false, "allow", "allow", "allow"),
            (Some("maintain"), "NONE", false, "allow", "allow", "allow"),
            (Some("write"), "NONE", false, "allow", "allow", "allow"),
            (Some("WRITE"), "NONE", false, "allow", "allow", "allow"),
            (Some("triage"), "MEMBER", false, "deny", "deny", "deny"),
            (Some("read"), "OWNER", false, "deny", "deny", "deny"),
            (Some("none"), "NONE", false, "deny", "deny", "deny"),
            (None, "OWNER", false, "deny", "deny", "deny"),
            (Some("writer"), "NONE", false, "deny", "deny", "deny"),
            (Some(""), "NONE", false, "deny", "deny", "deny"),
            // Associations only ever unlock read-only commands.
            (Some("read"), "MEMBER", true, "allow", "deny", "deny"),
            (None, "OWNER", true, "allow", "deny", "deny"),
            (None, "collaborator", true, "allow", "deny", "deny"),
            (Some("read"), "CONTRIBUTOR", true, "deny", "deny", "deny"),
            (
                Some("none"),
                "FIRST_TIME_CONTRIBUTOR",
                true,
                "deny",
                "deny",
                "deny",
            ),
            (None, "", true, "deny", "deny", "deny"),
            (Some("write"), "NONE", true, "allow", "allow", "allow"),
        ];
        for &(permission, association, with_assoc, read_only, approve, write) in table {
            let config = BotConfig {
                read_only_associations: if with_assoc {
                    assoc.clone()
                } else {
                    Vec::new()
                },
                ..BotConfig::default()
            };
            let a = actor(permission, association);
            for name in ALL {
                let c = command(name);
                let expected = if c.read_only() {
                    read_only
                } else if c.writes() {
                    write
                } else {
                    approve
                };
                let d = decide(&config, &c, &a, &issue(), false);
                assert_eq!(
                    kind(&d),
                    expected,
                    "{permission:?} {association} assoc={with_assoc} {name}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn allowlists_grant_everything() {
        let config = BotConfig {
            allowed_users: vec!["Alice".into()],
            allowed_teams: vec!["octo-org/Core".into()],
            ..BotConfig::default()
        };
        let user = actor(Some("read"), "NONE");
        let mut member = actor(None, "NONE");
        member.login = "bob".into();
        member.teams = vec!["octo-org/docs".into(), "octo-org/core".into()];
        let mut outsider = actor(None, "NONE");
        outsider.login = "alice2".into();
        outsider.teams = vec!["core".into(), "other-org/core".into()];
        for name in ALL {
            let c = command(name);
            assert_eq!(
                decide(&config, &c, &user, &issue(), false),
                Decision::Allow,
                "{name}"
            );
            assert_eq!(
                decide(&config, &c, &member, &issue(), false),
                Decision::Allow,
                "{name}"
            );
            assert_eq!(
                kind(&decide(&config, &c, &outsider, &issue(), false)),
                "deny",
                "{name}"
            );
        }
        // An empty login never matches.
        let empty = BotConfig {
            allowed_users: vec!["".into()],
            ..BotConfig::default()
        };
        let mut nobody = actor(None, "NONE");
        nobody.login = String::new();
        assert_eq!(
            kind(&decide(
                &empty,
                &Command::Review { full: false },
                &nobody,
                &issue(),
                false
            )),
            "deny"
        );
    }

    #[test]
    fn deny_reasons_name_what_is_missing() {
        let config = BotConfig {
            read_only_associations: vec!["MEMBER".into()],
            ..BotConfig::default()
        };
        let a = actor(Some("read"), "CONTRIBUTOR");
        let Decision::Deny(reason) = decide(
            &config,
            &Command::Review { full: false },
            &a,
            &issue(),
            false,
        ) else {
            panic!()
        };
        assert!(
            reason.contains("`review` needs write permission"),
            "{reason}"
        );
        assert!(reason.contains("MEMBER"), "{reason}");
        assert!(reason.contains("@alice has `read`"), "{reason}");
        let Decision::Deny(reason) = decide(&config, &Command::FixTests, &a, &issue(), false)
        else {
            panic!()
        };
        assert!(
            reason.contains("`fix_tests` needs write permission"),
            "{reason}"
        );
        assert!(!reason.contains("MEMBER"), "{reason}");
        let unknown = actor(None, "NONE");
        let Decision::Deny(reason) = decide(&config, &Command::Plan, &unknown, &issue(), false)
        else {
            panic!()
        };
        assert!(reason.contains("`unknown` permission"), "{reason}");
    }

    /// (from_fork, fork_opt_in, allow_fork_prs, require_label, org_wide,
    /// has_label) → outcome for write commands; read-only commands and
    /// approve are never affected.
    #[test]
    fn fork_and_label_table() {
        let label = "penguin:auto";
        #[allow(clippy::type_complexity)]
        let table: &[(bool, bool, bool, bool, bool, bool, &str)] = &[
            (false, false, false, false, false, false, "allow"),
            (true, false, false, false, false, false, "deny"),
            (true, true, false, false, false, false, "allow"),
            (true, false, true, false, false, false, "allow"),
            (true, true, true, false, false, false, "allow"),
            (false, false, false, true, true, false, "needs_label"),
            (false, false, false, true, true, true, "allow"),
            (false, false, false, true, false, false, "allow"),
            (false, false, false, false, true, false, "allow"),
            // A fork that may not run is denied before any label is asked for.
            (true, false, false, true, true, false, "deny"),
            (true, false, false, true, true, true, "deny"),
            (true, true, false, true, true, false, "needs_label"),
            (true, false, true, true, true, true, "allow"),
        ];
        for (
            row,
            &(from_fork, opt_in, allow_forks, require_label, org_wide, has_label, expected),
        ) in table.iter().enumerate()
        {
            let config = BotConfig {
                allow_fork_prs: allow_forks,
                require_label,
                ..BotConfig::default()
            };
            let target = Target {
                is_pull_request: true,
                from_fork,
                labels: if has_label {
                    vec!["bug".into(), "Penguin:Auto".into()]
                } else {
                    vec!["bug".into()]
                },
                org_wide_install: org_wide,
            };
            let a = actor(Some("write"), "MEMBER");
            for name in ALL {
                let c = command(name);
                let d = decide(&config, &c, &a, &target, opt_in);
                let want = if c.writes() { expected } else { "allow" };
                assert_eq!(kind(&d), want, "row {row}, {name}: {d:?}");
                if want == "needs_label" {
                    assert_eq!(d, Decision::NeedsLabel(label.into()));
                }
            }
        }
    }

    #[test]
    fn everything_is_denied_by_default() {
        let config = BotConfig::default();
        let stranger = Actor {
            login: "mallory".into(),
            ..Actor::default()
        };
        for name in ALL {
            assert_eq!(
                kind(&decide(&config, &command(name), &stranger, &issue(), true)),
                "deny",
                "{name}"
            );
        }
    }
}
