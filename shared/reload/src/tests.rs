use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The test loader: comma-separated words of lowercase ASCII letters.
fn words(path: &Path, bytes: &[u8]) -> Result<Vec<String>, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))?;
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.chars().all(|c| c.is_ascii_lowercase()) {
                Ok(w.to_string())
            } else {
                Err(format!("{}: not a word: {w:?}", path.display()))
            }
        })
        .collect()
}

fn start(path: impl AsRef<Path>) -> Reloadable<Vec<String>> {
    Reloadable::start(path, "test-reload", words).unwrap()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

// ---- Reloadable --------------------------------------------------------

#[test]
fn reloads_and_keeps_the_last_good_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "review").unwrap();
    let watcher = start(&path);
    assert_eq!(watcher.path(), path);
    assert_eq!(*watcher.current(), ["review"]);
    assert_eq!(watcher.generation(), 0);

    std::fs::write(&path, "review, plan").unwrap();
    wait_for("the reload", || *watcher.current() == ["review", "plan"]);
    assert_eq!(watcher.generation(), 1);
    assert_eq!(watcher.last_error(), None);

    // A broken edit is rejected; the last good value stays.
    std::fs::write(&path, "review, Plan!").unwrap();
    wait_for("the rejection", || watcher.last_error().is_some());
    let error = watcher.last_error().unwrap();
    assert!(
        error.contains("words.txt: not a word: \"Plan!\""),
        "{error}"
    );
    assert_eq!(*watcher.current(), ["review", "plan"]);
    std::fs::write(&path, b"\xff").unwrap();
    wait_for("the encoding error", || {
        watcher
            .last_error()
            .is_some_and(|e| e.contains("not UTF-8"))
    });
    assert_eq!(*watcher.current(), ["review", "plan"]);

    // Fixed again: reloaded, error cleared.
    std::fs::write(&path, "help").unwrap();
    wait_for("the fix", || *watcher.current() == ["help"]);
    assert_eq!(watcher.last_error(), None);
    assert_eq!(watcher.generation(), 2);

    // An editor's rename-over save.
    let tmp = dir.path().join(".words.txt.swp");
    std::fs::write(&tmp, "plan").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for("the rename", || *watcher.current() == ["plan"]);

    // Removing the file keeps the last value.
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(*watcher.current(), ["plan"]);
    std::fs::write(&path, "summarize").unwrap();
    wait_for("the re-creation", || *watcher.current() == ["summarize"]);

    // Unrelated files in the directory change nothing.
    let generation = watcher.generation();
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watcher.generation(), generation);
}

#[test]
fn a_read_error_is_reported_and_cleared_by_the_next_good_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "plan").unwrap();
    let watcher = start(&path);

    // Something unreadable where the file was.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    wait_for("the read error", || {
        watcher
            .last_error()
            .is_some_and(|e| e.starts_with(&format!("cannot read {}: ", path.display())))
    });
    assert_eq!(*watcher.current(), ["plan"]);

    // The same content as before comes back: the error goes, nothing reloads.
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, "plan").unwrap();
    wait_for("the recovery", || watcher.last_error().is_none());
    assert_eq!(*watcher.current(), ["plan"]);
    assert_eq!(watcher.generation(), 0);
}

#[cfg(unix)]
#[test]
fn follows_kubernetes_symlink_swaps() {
    use std::os::unix::fs::symlink;
    // The layout Kubernetes uses for a mounted ConfigMap or Secret:
    //   words.txt -> ..data/words.txt, ..data -> ..2024_01_01_v1
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let v1 = mount.join("..2024_01_01_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("words.txt"), "review").unwrap();
    symlink("..2024_01_01_v1", mount.join("..data")).unwrap();
    symlink("..data/words.txt", mount.join("words.txt")).unwrap();

    let watcher = start(mount.join("words.txt"));
    assert_eq!(*watcher.current(), ["review"]);

    // An update: new directory, new `..data_tmp` link renamed over `..data`,
    // old directory removed.
    let swap = |version: &str, text: &str, old: &str| {
        let new_dir = mount.join(version);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("words.txt"), text).unwrap();
        symlink(version, mount.join("..data_tmp")).unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        std::fs::remove_dir_all(mount.join(old)).unwrap();
    };
    swap("..2024_01_02_v2", "review, approve", "..2024_01_01_v1");
    wait_for("the swap", || *watcher.current() == ["review", "approve"]);

    // A broken version is kept out.
    swap("..2024_01_03_v3", "deploy!", "..2024_01_02_v2");
    wait_for("the rejection", || watcher.last_error().is_some());
    assert!(watcher
        .last_error()
        .unwrap()
        .contains("not a word: \"deploy!\""));
    assert_eq!(*watcher.current(), ["review", "approve"]);

    swap("..2024_01_04_v4", "help", "..2024_01_03_v3");
    wait_for("the good version", || *watcher.current() == ["help"]);
}

#[test]
fn start_errors_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    // Missing file: the default, and a later file is picked up.
    let watcher = start(&path);
    assert!(watcher.current().is_empty());
    std::fs::write(&path, "plan").unwrap();
    wait_for("the new file", || *watcher.current() == ["plan"]);
    drop(watcher);

    // Content the loader rejects at start is its error.
    std::fs::write(&path, "Maybe").unwrap();
    let error = Reloadable::start(&path, "test-reload", words).unwrap_err();
    assert!(
        matches!(&error, StartError::Load(e) if e.ends_with("words.txt: not a word: \"Maybe\"")),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("words.txt: not a word"),
        "{error}"
    );

    // A file that cannot be read at start is an error naming it.
    let unreadable = dir.path().join("a-directory");
    std::fs::create_dir(&unreadable).unwrap();
    let error = Reloadable::start(&unreadable, "test-reload", words).unwrap_err();
    assert!(matches!(&error, StartError::Read { path, .. } if *path == unreadable));
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}: ", unreadable.display())),
        "{error}"
    );

    // A directory that does not exist yet: the default, polled for later.
    let absent = start(dir.path().join("nope/words.txt"));
    assert!(absent.current().is_empty());

    let fixed = Reloadable::fixed(vec!["help".to_string()]);
    assert_eq!(*fixed.current(), ["help"]);
    assert_eq!(fixed.generation(), 0);
    assert_eq!(fixed.path(), Path::new(""));
    assert_eq!(fixed.last_error(), None);
}

#[test]
fn a_directory_that_appears_later_is_polled_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later/words.txt");
    let watcher = start(&path);
    assert!(watcher.current().is_empty());
    std::fs::create_dir(dir.path().join("later")).unwrap();
    std::fs::write(&path, "plan").unwrap();
    // Only the poll (every 10 s) can see it: the directory is not watched.
    wait_for("the poll", || *watcher.current() == ["plan"]);
    assert_eq!(watcher.generation(), 1);
}

#[test]
fn current_is_cheap_and_shared() {
    let fixed = Reloadable::fixed(vec!["help".to_string()]);
    let (a, b) = (fixed.current(), fixed.current());
    assert!(Arc::ptr_eq(&a, &b));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "plan").unwrap();
    let watcher = start(&path);
    let (a, b) = (watcher.current(), watcher.current());
    assert!(Arc::ptr_eq(&a, &b));
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_stops_the_reload_thread() {
    fn running(name: &str) -> bool {
        std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
            let comm = task.unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == name)
        })
    }
    let dir = tempfile::tempdir().unwrap();
    let watcher = Reloadable::start(dir.path().join("words.txt"), "reload-drop", words).unwrap();
    // The thread names itself once it runs.
    wait_for("the thread to start", || running("reload-drop"));
    drop(watcher);
    wait_for("the thread to stop", || !running("reload-drop"));
}

// ---- FileWatch -------------------------------------------------------

const WAKE: Duration = Duration::from_secs(5);

async fn wakes(watch: &mut FileWatch, within: Duration) -> bool {
    tokio::time::timeout(within, watch.changed()).await.is_ok()
}

#[tokio::test]
async fn file_watch_wakes_on_its_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let mut watch = FileWatch::new(&path).unwrap();
    assert_eq!(watch.path(), path);

    std::fs::write(dir.path().join("other"), "x").unwrap();
    assert!(!wakes(&mut watch, Duration::from_millis(300)).await);

    std::fs::write(&path, "one").unwrap();
    assert!(wakes(&mut watch, WAKE).await, "creation");
    std::fs::write(&path, "two").unwrap();
    assert!(wakes(&mut watch, WAKE).await, "in-place write");
    let tmp = dir.path().join(".token.tmp");
    std::fs::write(&tmp, "three").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(wakes(&mut watch, WAKE).await, "rename over");
    std::fs::remove_file(&path).unwrap();
    assert!(wakes(&mut watch, WAKE).await, "deletion");
    // The burst was coalesced: nothing is left pending.
    assert!(!wakes(&mut watch, Duration::from_millis(300)).await);
}

#[cfg(unix)]
#[tokio::test]
async fn file_watch_sees_symlink_swaps() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    std::fs::create_dir(mount.join("..v1")).unwrap();
    std::fs::write(mount.join("..v1/key.pem"), "one").unwrap();
    symlink("..v1", mount.join("..data")).unwrap();
    symlink("..data/key.pem", mount.join("key.pem")).unwrap();
    let mut watch = FileWatch::new(mount.join("key.pem")).unwrap();

    std::fs::create_dir(mount.join("..v2")).unwrap();
    std::fs::write(mount.join("..v2/key.pem"), "two").unwrap();
    symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    assert!(wakes(&mut watch, WAKE).await);
    assert_eq!(
        std::fs::read_to_string(mount.join("key.pem")).unwrap(),
        "two"
    );
}

#[tokio::test]
async fn file_watch_polls_when_the_directory_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = FileWatch::new(dir.path().join("nope/token")).unwrap();
    // No event can come; the poll still wakes the consumer.
    assert!(wakes(&mut watch, POLL + WAKE).await);
}
