//! Every process of a run, found and stopped — also the ones that escaped its process group.
//!
//! opencode starts each shell tool in a session of its own (`setsid`), so signalling the
//! CLI's group leaves `bash -c 'sleep 30'` running after a cancel, re-parented away. Two facts
//! find such processes anyway: the peer is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so
//! orphans re-parent to it instead of PID 1 and the parent links stay walkable; and every
//! process of a run carries `ORGX_RUN_TAG=<peer scope>/<run id>` in its environment (the host
//! sets it on the CLI beside `ORGX_RUN_ID`, and children inherit it), which also finds them
//! after the peer itself was killed and restarted. The scope is a digest of the peer's data
//! dir: stable across restarts of one peer, and different for two peers of one user, so
//! neither ever stops the other's processes when their run ids meet (the tests of this repo
//! give many runs one id, and once a peer stopped a neighbour's CLI by its `ORGX_RUN_ID`). A
//! run's end (cancel, timeout and normal exit alike) stops all of them: SIGTERM to each,
//! SIGKILL after the grace, and orphans that reached the peer are reaped.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The environment variable that tags every process of a run.
pub const RUN_TAG: &str = "ORGX_RUN_TAG";

/// This peer's scope in run tags, set once at start (`scope_to`); unset (`-`) in unit tests.
static SCOPE: OnceLock<String> = OnceLock::new();

/// Tag runs with a scope derived from `data_dir` (the first call wins).
pub fn scope_to(data_dir: &Path) {
    let _ = SCOPE.set(scope_of(data_dir));
}

fn scope_of(data_dir: &Path) -> String {
    let dir = data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf());
    hex::encode(&Sha256::digest(dir.as_os_str().as_encoded_bytes())[..6])
}

/// The value of `RUN_TAG` for `run_id`'s processes.
pub fn tag(run_id: &str) -> String {
    format!("{}/{run_id}", SCOPE.get().map_or("-", String::as_str))
}

/// Reap every zombie child of the peer that it did not spawn itself: orphans of runs that
/// re-parented to the subreaper and then exited on their own.
pub fn reap_orphans() {
    let me = std::process::id() as i32;
    let ours = crate::own_children::registered();
    for pid in all_pids() {
        if !ours.contains(&pid) && stat(pid).is_some_and(|(pp, s)| pp == me && s == 'Z') {
            let mut status = 0;
            // SAFETY: waitpid on one specific zombie child; WNOHANG never blocks.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
    }
}

/// Make the peer the reaper of its descendants' orphans. Linux only; elsewhere a no-op that
/// says so.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// `(ppid, state)` of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((f.next()?.parse().ok()?, state))
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// Whether `pid`'s environment says it belongs to `run_id`.
fn tagged(pid: i32, tag: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == tag))
}

/// The live (not zombie) processes of a run: descendants of `root` (when given) and every
/// process tagged with the run's id. Never the peer itself.
pub fn members(run_id: &str, root: Option<i32>) -> BTreeSet<i32> {
    let me = std::process::id() as i32;
    let tag = format!("{RUN_TAG}={}", tag(run_id)).into_bytes();
    let procs: Vec<(i32, i32, char)> = all_pids().into_iter().filter_map(|p| stat(p).map(|(pp, s)| (p, pp, s))).collect();
    let mut found: BTreeSet<i32> = procs.iter().filter(|(p, _, s)| *s != 'Z' && *p != me && tagged(*p, &tag)).map(|(p, _, _)| *p).collect();
    if let Some(root) = root.filter(|r| *r > 1 && *r != me) {
        found.insert(root);
    }
    // Close over parent links: a child of a member is a member (it may have cleared its env).
    loop {
        let before = found.len();
        for (p, pp, s) in &procs {
            if *s != 'Z' && *p != me && found.contains(pp) {
                found.insert(*p);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.retain(|p| stat(*p).is_some_and(|(_, s)| s != 'Z'));
    found
}

fn signal(pids: &BTreeSet<i32>, sig: i32) {
    for pid in pids {
        // SAFETY: kill(2) on a pid we just found; no memory is touched.
        unsafe { libc::kill(*pid, sig) };
    }
}

/// Stop every process of the run: SIGTERM, then SIGKILL to what is left after `grace`.
/// `exclude` is the CLI itself when its own handle waits for it (tokio reaps it). Returns how
/// many processes were found.
pub async fn stop(run_id: &str, root: Option<i32>, exclude: Option<i32>, grace: Duration) -> usize {
    let mut pids = members(run_id, root);
    if let Some(x) = exclude {
        pids.remove(&x);
    }
    if pids.is_empty() {
        // Orphans that exited on their own (a background job that finished after its CLI)
        // are zombies of the peer now: reap them even when nothing is left to stop.
        reap_orphans();
        return 0;
    }
    let count = pids.len();
    signal(&pids, libc::SIGTERM);
    let t0 = Instant::now();
    loop {
        reap_orphans();
        pids.retain(|p| stat(*p).is_some_and(|(_, s)| s != 'Z'));
        if pids.is_empty() {
            break;
        }
        if t0.elapsed() >= grace {
            signal(&pids, libc::SIGKILL);
            tokio::time::sleep(Duration::from_millis(20)).await;
            reap_orphans();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn each_data_dir_scopes_its_own_run_tags() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(scope_of(a.path()), scope_of(a.path()), "stable across restarts");
        assert_eq!(scope_of(a.path()), scope_of(&a.path().join(".")), "one dir, however it is spelled");
        assert_ne!(scope_of(a.path()), scope_of(b.path()));
        assert_eq!(scope_of(a.path()).len(), 12);
    }

    #[tokio::test]
    async fn a_process_of_another_peer_with_the_same_run_id_is_not_ours() {
        let run_id = format!("shared-id-{}", std::process::id());
        let mut neighbour = Command::new("sleep").arg("30").env(RUN_TAG, format!("0123456789ab/{run_id}")).spawn().unwrap();
        let mut ours = Command::new("sleep").arg("30").env(RUN_TAG, tag(&run_id)).spawn().unwrap();
        let t0 = Instant::now();
        while !members(&run_id, None).contains(&(ours.id() as i32)) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = members(&run_id, None);
        assert!(found.contains(&(ours.id() as i32)), "{found:?}");
        assert!(!found.contains(&(neighbour.id() as i32)), "another peer's process: {found:?}");
        assert_eq!(stop(&run_id, None, None, Duration::from_millis(500)).await, 1, "ours alone is stopped");
        assert!(neighbour.try_wait().unwrap().is_none(), "the neighbour was left running");
        for c in [&mut neighbour, &mut ours] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    #[tokio::test]
    async fn a_process_that_escaped_the_group_and_its_parent_is_found_by_its_tag_and_stopped() {
        let run_id = format!("tree-test-{}", std::process::id());
        // `setsid` gives the sleeper its own session and group, and its parent exits at once:
        // the sleeper is an orphan in no group of ours, as opencode's shell tools are.
        let mut parent = Command::new("sh")
            .args(["-c", "setsid sh -c 'sleep 30' </dev/null >/dev/null 2>&1 & exit 0"])
            .env(RUN_TAG, tag(&run_id))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        parent.wait().unwrap();
        let t0 = Instant::now();
        let mut found = BTreeSet::new();
        while found.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            found = members(&run_id, None);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!found.is_empty(), "the escaped sleeper is found by its run tag");
        assert!(members("some-other-run", None).is_disjoint(&found), "another run's processes are not ours");
        let stopped = stop(&run_id, None, None, Duration::from_secs(3)).await;
        assert!(stopped >= 1);
        assert!(members(&run_id, None).is_empty(), "nothing of the run is left");
    }

    #[tokio::test]
    async fn descendants_are_found_by_parent_links_even_without_the_tag() {
        let mut child = Command::new("sh").args(["-c", "env -i sh -c 'sleep 30' & wait"]).stdin(Stdio::null()).spawn().unwrap();
        let root = child.id() as i32;
        let t0 = Instant::now();
        while members("untagged", Some(root)).len() < 3 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(members("untagged", Some(root)).len() >= 2, "the shell and its env-cleared child");
        stop("untagged", Some(root), Some(root), Duration::from_secs(3)).await;
        let _ = child.kill();
        let _ = child.wait();
        assert!(members("untagged", Some(root)).is_empty(), "{:?}", members("untagged", Some(root)));
    }
}
