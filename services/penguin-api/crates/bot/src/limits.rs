//! Commands per repository and per user per rolling hour.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window the caps apply to.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Above this many tracked keys, expired ones are swept…
const SWEEP_ABOVE: usize = 4096;
/// …at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Caps commands per repository and per user (across repositories) in any
/// rolling hour. Names compare ignoring case. Only accepted commands count:
/// a refused one does not use up the allowance. Not synchronised: share it
/// behind a `Mutex`.
#[derive(Debug)]
pub struct CommandLimiter {
    per_repo: u32,
    per_user: u32,
    repos: HashMap<String, VecDeque<Instant>>,
    users: HashMap<String, VecDeque<Instant>>,
    last_sweep: Option<Instant>,
}

impl CommandLimiter {
    /// At most `per_repo` commands per repository and `per_user` per user
    /// per rolling hour (0 allows none).
    pub fn new(per_repo: u32, per_user: u32) -> Self {
        CommandLimiter {
            per_repo,
            per_user,
            repos: HashMap::new(),
            users: HashMap::new(),
            last_sweep: None,
        }
    }

    /// The caps from `github.bot`.
    pub fn from_config(config: &crate::config::BotConfig) -> Self {
        CommandLimiter::new(
            config.commands_per_hour_per_repo,
            config.commands_per_hour_per_user,
        )
    }

    /// Changes the caps (after a configuration reload); what was recorded
    /// still counts.
    pub fn set_caps(&mut self, per_repo: u32, per_user: u32) {
        self.per_repo = per_repo;
        self.per_user = per_user;
    }

    /// The caps: (per repository, per user).
    pub fn caps(&self) -> (u32, u32) {
        (self.per_repo, self.per_user)
    }

    /// Records a command by `user` in `repo` at `now` if both are under
    /// their caps; otherwise the reason, saying when to retry.
    pub fn check_and_record(&mut self, repo: &str, user: &str, now: Instant) -> Result<(), String> {
        let repo_key = repo.trim().to_lowercase();
        let user_key = user.trim().to_lowercase();
        let swept_lately = self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY);
        if self.repos.len() + self.users.len() > SWEEP_ABOVE && !swept_lately {
            sweep(&mut self.repos, now);
            sweep(&mut self.users, now);
            self.last_sweep = Some(now);
        }
        let repo_times = self.repos.entry(repo_key).or_default();
        prune(repo_times, now);
        if let Some(wait) = full(repo_times, self.per_repo, now) {
            return Err(format!(
                "{repo} has had its {} commands this hour; try again in {}",
                self.per_repo,
                minutes(wait)
            ));
        }
        let user_times = self.users.entry(user_key).or_default();
        prune(user_times, now);
        if let Some(wait) = full(user_times, self.per_user, now) {
            return Err(format!(
                "@{user} has used their {} commands this hour; try again in {}",
                self.per_user,
                minutes(wait)
            ));
        }
        user_times.push_back(now);
        repo_times.push_back(now);
        Ok(())
    }
}

/// Drops times at least an hour before `now`.
fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

fn sweep(map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
    map.retain(|_, times| {
        prune(times, now);
        !times.is_empty()
    });
}

/// `Some(time until a slot frees)` when `times` holds `cap` or more.
fn full(times: &VecDeque<Instant>, cap: u32, now: Instant) -> Option<Duration> {
    if times.len() < cap as usize {
        return None;
    }
    // The slot frees when the oldest of the newest `cap` leaves the window.
    let oldest_counted = times
        .len()
        .checked_sub(cap.max(1) as usize)
        .and_then(|i| times.get(i))
        .copied()
        .unwrap_or(now);
    Some(WINDOW.saturating_sub(now.saturating_duration_since(oldest_counted)))
}

fn minutes(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    if minutes == 1 {
        "1 minute".into()
    } else {
        format!("{minutes} minutes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    #[test]
    fn per_repo_cap_in_a_rolling_hour() {
        let mut l = CommandLimiter::new(3, 100);
        let t0 = Instant::now();
        assert_eq!(l.check_and_record("o/r", "a", t0), Ok(()));
        assert_eq!(l.check_and_record("o/r", "b", t0 + mins(10)), Ok(()));
        assert_eq!(l.check_and_record("o/r", "c", t0 + mins(20)), Ok(()));
        let err = l.check_and_record("o/r", "d", t0 + mins(30)).unwrap_err();
        assert!(err.contains("o/r has had its 3 commands"), "{err}");
        assert!(err.contains("try again in 30 minutes"), "{err}");
        // Other repositories are separate; names ignore case.
        assert_eq!(l.check_and_record("o/other", "d", t0 + mins(30)), Ok(()));
        assert!(l.check_and_record("O/R", "d", t0 + mins(59)).is_err());
        // Exactly an hour after the first, its slot is free again.
        assert_eq!(l.check_and_record("o/r", "d", t0 + mins(60)), Ok(()));
        assert!(l.check_and_record("o/r", "e", t0 + mins(61)).is_err());
        assert_eq!(l.check_and_record("o/r", "e", t0 + mins(70)), Ok(()));
    }

    #[test]
    fn per_user_cap_across_repositories() {
        let mut l = CommandLimiter::new(100, 2);
        let t0 = Instant::now();
        assert_eq!(l.check_and_record("o/a", "Alice", t0), Ok(()));
        assert_eq!(l.check_and_record("o/b", "alice", t0 + mins(1)), Ok(()));
        let err = l
            .check_and_record("o/c", "ALICE", t0 + mins(2))
            .unwrap_err();
        assert!(err.contains("@ALICE has used their 2 commands"), "{err}");
        assert!(err.contains("58 minutes"), "{err}");
        assert_eq!(l.check_and_record("o/c", "bob", t0 + mins(2)), Ok(()));
        assert_eq!(l.check_and_record("o/c", "alice", t0 + mins(60)), Ok(()));
    }

    #[test]
    fn refused_commands_do_not_count() {
        let mut l = CommandLimiter::new(2, 1);
        let t0 = Instant::now();
        assert_eq!(l.check_and_record("o/r", "a", t0), Ok(()));
        // Refused by the user cap: the repository's count is unchanged.
        for i in 1..10 {
            assert!(l.check_and_record("o/r", "a", t0 + mins(i)).is_err());
        }
        assert_eq!(l.check_and_record("o/r", "b", t0 + mins(10)), Ok(()));
        // Refused by the repository cap: c's allowance is not used.
        assert!(l.check_and_record("o/r", "c", t0 + mins(11)).is_err());
        assert_eq!(l.check_and_record("o/x", "c", t0 + mins(12)), Ok(()));
    }

    #[test]
    fn zero_cap_allows_nothing_and_caps_can_change() {
        let t0 = Instant::now();
        let mut l = CommandLimiter::new(0, 5);
        let err = l.check_and_record("o/r", "a", t0).unwrap_err();
        assert!(err.contains("try again in 60 minutes"), "{err}");
        l.set_caps(1, 5);
        assert_eq!(l.caps(), (1, 5));
        assert_eq!(l.check_and_record("o/r", "a", t0), Ok(()));
        assert!(l
            .check_and_record("o/r", "a", t0 + Duration::from_secs(3599))
            .is_err());
        let err = l
            .check_and_record("o/r", "a", t0 + Duration::from_secs(3599))
            .unwrap_err();
        assert!(err.contains("try again in 1 minute"), "{err}");
        // Lowering a cap applies to what was already recorded.
        let mut l = CommandLimiter::new(5, 5);
        for i in 0..3 {
            assert_eq!(l.check_and_record("o/r", "a", t0 + mins(i)), Ok(()));
        }
        l.set_caps(2, 5);
        let err = l.check_and_record("o/r", "a", t0 + mins(5)).unwrap_err();
        // The second-newest (t0+1) leaves the window at t0+61.
        assert!(err.contains("56 minutes"), "{err}");
    }

    #[test]
    fn from_config_and_old_entries_are_swept() {
        let config = crate::config::BotConfig::default();
        let mut l = CommandLimiter::from_config(&config);
        assert_eq!(l.caps(), (60, 20));
        let t0 = Instant::now();
        for i in 0..(SWEEP_ABOVE as u64) {
            assert_eq!(
                l.check_and_record(&format!("o/r{i}"), &format!("u{i}"), t0),
                Ok(())
            );
        }
        assert_eq!(l.repos.len() + l.users.len(), 2 * SWEEP_ABOVE);
        assert_eq!(l.check_and_record("o/new", "new", t0 + mins(61)), Ok(()));
        assert_eq!(l.repos.len() + l.users.len(), 2);
    }

    #[test]
    fn earlier_instants_still_count() {
        // Instants out of order (threads racing) never panic or free slots.
        let mut l = CommandLimiter::new(1, 10);
        let t1 = Instant::now() + mins(5);
        assert_eq!(l.check_and_record("o/r", "a", t1), Ok(()));
        assert!(l.check_and_record("o/r", "a", t1 - mins(1)).is_err());
    }
}
