//! The driver process: spawned in its own process group, its stderr always drained, and
//! stopped as a group so nothing it started outlives the run.
//!
//! Three guards against orphans: the child leads a new process group and every stop signals
//! the whole group (a Bash tool's grandchildren included); the child is tied to the peer with
//! `PR_SET_PDEATHSIG`, so a SIGKILLed peer takes it along; and the group id is recorded by the
//! caller so a restarted peer can kill what a crashed one left (`kill_stale_group`). The
//! daemon sets the death signal through its own binary (`tied`), so that starting a CLI never
//! forks the peer; elsewhere (tests, one-shot commands) a `pre_exec` hook in a fork sets it.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout, Command};

use super::lines::LineReader;

#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env_remove: Vec<OsString>,
    pub env_add: Vec<(OsString, OsString)>,
    pub max_line_bytes: usize,
    pub stderr_tail_bytes: usize,
    /// What to do when the program is missing (the driver's install hint and setting).
    pub setting: String,
    pub install_hint: String,
    /// The peer's own binary, to start the program through `tied` (the daemon); `None`:
    /// fork with a `pre_exec` hook.
    pub tied_by: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    Signal(i32),
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("`{program}` was not found: install it ({install_hint}) or set {setting} to its path")]
    NotFound { program: String, setting: String, install_hint: String },
    #[error("`{program}` is not executable (permission denied): check the file's mode or {setting}")]
    PermissionDenied { program: String, setting: String },
    #[error("the task's repo_path `{cwd}` cannot be used as a working directory: {source}")]
    BadCwd { cwd: String, source: std::io::Error },
    #[error("cannot start `{program}`: {source}")]
    Other { program: String, source: std::io::Error },
}

/// `cmd` with what every driver process gets: the task's directory (and `PWD`), a group of
/// its own, piped stdout and stderr, no stdin, and the spec's environment changes.
fn configure(spec: &SpawnSpec, mut cmd: Command) -> Command {
    // A shell sets PWD to the directory it starts a program in; the peer's own PWD (where
    // it was started) would be stale. Some CLIs trust PWD over getcwd(): opencode then
    // takes the task's repo for an external directory and refuses every edit in it.
    let pwd = std::fs::canonicalize(&spec.cwd).unwrap_or_else(|_| spec.cwd.clone());
    cmd.current_dir(&spec.cwd)
        .env("PWD", &pwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env_add {
        cmd.env(k, v);
    }
    cmd
}

/// Start `program` in a fork of the peer whose `pre_exec` hook sets the death signal.
fn forked(spec: &SpawnSpec, program: &std::path::Path) -> std::io::Result<Child> {
    let mut cmd = configure(spec, Command::new(program));
    cmd.args(&spec.args);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The last bytes a process wrote to stderr.
#[derive(Default)]
struct StderrTail {
    bytes: Vec<u8>,
}

pub struct DriverProcess {
    child: Child,
    pid: i32,
    exit: Option<ExitInfo>,
    stderr: Arc<Mutex<StderrTail>>,
    /// The stderr reader; `wait` lets it finish so the tail holds the last words.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

/// How long `wait` lets the stderr reader drain once the group is gone. The pipe closes
/// when the last process holding it exits; one that escaped the group (a `setsid` daemon)
/// may keep it open, and the run must not wait on it.
const STDERR_DRAIN: Duration = Duration::from_millis(500);

impl DriverProcess {
    pub fn spawn(spec: SpawnSpec) -> Result<(DriverProcess, LineReader<ChildStdout>), SpawnError> {
        let program = spec.program.display().to_string();
        if let Err(source) = std::fs::read_dir(&spec.cwd) {
            return Err(SpawnError::BadCwd { cwd: spec.cwd.display().to_string(), source });
        }
        // Resolved here, against the child's PATH, so a missing CLI is refused with its hint
        // whichever way it is started.
        let path = spec.env_add.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).or_else(|| std::env::var_os("PATH"));
        let not_found =
            || SpawnError::NotFound { program: program.clone(), setting: spec.setting.clone(), install_hint: spec.install_hint.clone() };
        let denied = || SpawnError::PermissionDenied { program: program.clone(), setting: spec.setting.clone() };
        let resolved = super::tied::resolve(&spec.program, path.as_deref()).map_err(|why| match why {
            super::tied::Unresolved::NotFound => not_found(),
            super::tied::Unresolved::NotExecutable => denied(),
        })?;
        let tied = match &spec.tied_by {
            Some(exe) => {
                match configure(&spec, Command::new(exe)).args(super::tied::step_args(std::process::id(), &resolved, &spec.args)).spawn() {
                    Ok(child) => Some(child),
                    // The peer's binary was replaced or removed (an upgrade): fork instead.
                    Err(e) => {
                        tracing::warn!(exe = %exe.display(), "cannot start a CLI through the peer's own binary ({e}); forking instead");
                        None
                    }
                }
            }
            None => None,
        };
        let mut child = match tied {
            Some(child) => child,
            None => forked(&spec, &resolved).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => not_found(),
                std::io::ErrorKind::PermissionDenied => denied(),
                _ => SpawnError::Other { program: program.clone(), source },
            })?,
        };
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        let mut stderr_reader = None;
        if let Some(mut err) = child.stderr.take() {
            let tail = stderr.clone();
            let cap = spec.stderr_tail_bytes.max(256);
            // Always drain stderr: a chatty child must never block on a full pipe.
            stderr_reader = Some(tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.bytes.extend_from_slice(&buf[..n]);
                    if t.bytes.len() > cap {
                        let cut = t.bytes.len() - cap;
                        t.bytes.drain(..cut);
                    }
                }
            }));
        }
        Ok((DriverProcess { child, pid, exit: None, stderr, stderr_reader }, LineReader::new(stdout, spec.max_line_bytes)))
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send `sig` to the whole process group.
    pub fn signal_group(&self, sig: i32) -> std::io::Result<()> {
        if self.pid <= 0 {
            return Ok(());
        }
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        if unsafe { libc::kill(-self.pid, sig) } == 0 {
            Ok(())
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }

    /// Wait for the process to exit; then kill anything left in its group.
    pub async fn wait(&mut self) -> ExitInfo {
        if let Some(e) = self.exit {
            return e;
        }
        let info = match self.child.wait().await {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(c), _) => ExitInfo::Code(c),
                (None, Some(s)) => ExitInfo::Signal(s),
                (None, None) => ExitInfo::Code(-1),
            },
            Err(_) => ExitInfo::Code(-1),
        };
        self.exit = Some(info);
        // Grandchildren (a Bash tool's background jobs) must not outlive the run.
        let _ = self.signal_group(libc::SIGKILL);
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(STDERR_DRAIN, reader).await;
        }
        info
    }

    /// SIGTERM to the group; SIGKILL to the group after `grace` if the process is still
    /// there. Always ends with the group gone.
    pub async fn terminate(&mut self, grace: Duration) -> ExitInfo {
        if let Some(e) = self.exit {
            let _ = self.signal_group(libc::SIGKILL);
            return e;
        }
        let _ = self.signal_group(libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = self.signal_group(libc::SIGKILL);
            }
        }
        self.wait().await
    }

    /// The last non-empty line the process wrote to stderr (lossy UTF-8, ≤ 1000 chars).
    pub fn stderr_tail(&self) -> Option<String> {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&t.bytes);
        let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
        Some(line.chars().take(1000).collect())
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.signal_group(libc::SIGKILL);
        }
    }
}

/// `(pgrp, starttime)` of a live process, from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after `(comm)`: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(2)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// The start time (clock ticks since boot) of `pid`, recorded with its group id so a later
/// life of the peer can tell its own group from one that reused the id.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Kill a process group a previous life of the peer recorded for a run. The group is
/// killed unless its id now belongs to a different leader: a live process with pid ==
/// `pgid` that leads its group but started at another time. While any member of our old
/// group lives, the kernel does not let another process create a group with that id, so
/// this cannot hit a stranger's group. Returns whether a signal was delivered.
pub fn kill_stale_group(pgid: i32, leader_start: Option<u64>) -> bool {
    if pgid <= 1 {
        return false;
    }
    if let (Some((pgrp, started)), Some(recorded)) = (proc_stat(pgid), leader_start) {
        if pgrp == pgid && started != recorded {
            return false;
        }
    }
    // SAFETY: signals a process group; no memory is touched.
    unsafe { libc::kill(-pgid, libc::SIGKILL) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str) -> SpawnSpec {
        SpawnSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env_remove: vec!["SECRET_FOR_TEST".into()],
            env_add: vec![("ADDED_FOR_TEST".into(), "yes".into())],
            max_line_bytes: 1 << 20,
            stderr_tail_bytes: 4096,
            setting: "ORGX_CLAUDE_BIN".into(),
            install_hint: "npm install -g @anthropic-ai/claude-code".into(),
            tied_by: None,
        }
    }

    /// Whether any member of the group still runs. Zombies do not count: in a container
    /// whose PID 1 does not reap orphans, killed members linger as zombies.
    fn group_alive(pgid: i32) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return false };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
    }

    #[tokio::test]
    async fn exit_status_env_and_stderr_tail() {
        std::env::set_var("SECRET_FOR_TEST", "x");
        let (mut p, mut out) = DriverProcess::spawn(spec(
            "echo ${SECRET_FOR_TEST:-gone} $ADDED_FOR_TEST; echo \"$PWD\"; echo oops >&2; echo last words >&2; exit 3",
        ))
        .unwrap();
        assert_eq!(out.next().await.unwrap(), Some(super::super::lines::Line::Full(b"gone yes".to_vec())));
        let cwd = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        assert_eq!(
            out.next().await.unwrap(),
            Some(super::super::lines::Line::Full(cwd.display().to_string().into_bytes())),
            "PWD is the run's directory"
        );
        assert_eq!(p.wait().await, ExitInfo::Code(3));
        assert_eq!(p.stderr_tail().as_deref(), Some("last words"));
    }

    #[tokio::test]
    async fn missing_program_and_bad_cwd_are_named() {
        let mut s = spec("true");
        s.program = "/nonexistent/claude".into();
        let e = DriverProcess::spawn(s).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/claude") && e.contains("ORGX_CLAUDE_BIN"), "{e}");
        let mut s = spec("true");
        s.cwd = "/nonexistent/repo".into();
        let e = DriverProcess::spawn(s).err().unwrap().to_string();
        assert!(e.contains("repo_path `/nonexistent/repo`"), "{e}");
    }

    #[tokio::test]
    async fn terminate_kills_a_sigterm_proof_group_after_the_grace() {
        let (mut p, _out) = DriverProcess::spawn(spec("trap '' TERM; sleep 1000 & sleep 1000 & wait")).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pgid = p.pid();
        let t0 = std::time::Instant::now();
        let exit = p.terminate(Duration::from_millis(500)).await;
        let took = t0.elapsed();
        assert_eq!(exit, ExitInfo::Signal(libc::SIGKILL));
        assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "{took:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!group_alive(pgid), "the whole group is gone");
    }

    #[tokio::test]
    async fn a_stale_group_without_its_leader_is_killed_but_a_reused_id_is_not() {
        let (mut p, _out) = DriverProcess::spawn(spec("trap '' TERM; sleep 1000 & sleep 1000 & wait")).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pgid = p.pid();
        let started = start_time(pgid).unwrap();
        // The leader dies alone (as when the peer is SIGKILLed); its children stay in the group.
        unsafe { libc::kill(pgid, libc::SIGKILL) };
        let _ = p.child.wait().await;
        p.exit = Some(ExitInfo::Signal(9));
        assert!(group_alive(pgid), "grandchildren outlive their leader");
        // A different leader start time for a live leader means a reused id: leave it.
        assert!(!kill_stale_group(std::process::id() as i32, Some(1)), "never our own group by mistake");
        assert!(kill_stale_group(pgid, Some(started)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!group_alive(pgid));
    }
}
