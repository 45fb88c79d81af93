//! Starting a driver CLI tied to the peer's life (`PR_SET_PDEATHSIG`) without forking the
//! peer.
//!
//! Setting a death signal needs code in the child between fork and exec, and a `pre_exec`
//! hook makes the standard library fork the whole peer instead of using `posix_spawn`
//! (vfork-like). A fork copies the page tables of everything the peer maps, and stalls the
//! peer's other threads meanwhile: with a rules version of 10,000 rules prepared (a 20 MiB
//! snapshot), it took 5-7 ms of every run's start (`cargo bench --bench delivery`, "start").
//! So the peer spawns its own binary instead, as `orgx-peer __exec-tied <peer pid> <program>
//! <args…>`: this small step sets the death signal in the new process, checks that the peer
//! is still its parent, and execs the CLI, which keeps the process, its group and its pid.
//!
//! The program is resolved against `PATH` by the peer first, so a missing CLI is still
//! refused before anything starts, with the install hint. If the exec fails anyway (the file
//! went away in between), the step writes why to stderr and exits 127 or 126, as a shell does.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The hidden first argument that makes the binary this step (checked before anything else
/// in `main`: no logging, no runtime, no configuration).
pub const SUBCOMMAND: &str = "__exec-tied";

/// If this process was started as the step, do it: `Some` only when the exec failed (its exit
/// status). `None`: the binary was started for something else.
pub fn main_if_invoked() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(SUBCOMMAND)) {
        return None;
    }
    let parent: Option<libc::pid_t> = args.next().and_then(|p| p.to_str()?.parse().ok());
    let (Some(parent), Some(program)) = (parent, args.next()) else {
        eprintln!("orgx-peer {SUBCOMMAND}: usage: {SUBCOMMAND} <peer pid> <program> [args…]");
        return Some(std::process::ExitCode::from(2));
    };
    // SAFETY: prctl and getppid touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            eprintln!("orgx-peer {SUBCOMMAND}: cannot set the death signal: {}", std::io::Error::last_os_error());
            return Some(std::process::ExitCode::from(126));
        }
        // The peer may have died before the death signal was set: then nobody supervises us.
        if libc::getppid() != parent {
            return Some(std::process::ExitCode::from(1));
        }
    }
    // `exec` returns only on failure; the environment, directory, group and stdio carry over.
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!("orgx-peer {SUBCOMMAND}: cannot run `{}`: {err}", Path::new(&program).display());
    Some(std::process::ExitCode::from(if err.kind() == std::io::ErrorKind::PermissionDenied { 126 } else { 127 }))
}

/// The arguments that run `program args…` through the step, for the peer with pid `parent`.
pub fn step_args(parent: u32, program: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut all = Vec::with_capacity(args.len() + 3);
    all.push(OsString::from(SUBCOMMAND));
    all.push(OsString::from(parent.to_string()));
    all.push(program.as_os_str().to_owned());
    all.extend(args.iter().cloned());
    all
}

/// Why a program could not be resolved to a file to execute.
#[derive(Debug, PartialEq, Eq)]
pub enum Unresolved {
    NotFound,
    NotExecutable,
}

/// `program` as the file a shell would run: itself when it names a path (it contains a
/// `/`), else the first executable `<dir>/<program>` of `path` (the child's `PATH`).
pub fn resolve(program: &Path, path: Option<&OsStr>) -> Result<PathBuf, Unresolved> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return check(program).map(|()| program.to_path_buf());
    }
    if program.as_os_str().is_empty() {
        return Err(Unresolved::NotFound);
    }
    let mut denied = false;
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        // An empty entry means the current directory, as for a shell.
        let candidate = if dir.as_os_str().is_empty() { PathBuf::from(".").join(program) } else { dir.join(program) };
        if candidate.is_dir() {
            // A directory of that name is not a program: a shell looks further.
            continue;
        }
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Unresolved::NotExecutable) => denied = true,
            Err(Unresolved::NotFound) => {}
        }
    }
    Err(if denied { Unresolved::NotExecutable } else { Unresolved::NotFound })
}

/// `file` is a regular file (through symlinks) that this process may execute.
fn check(file: &Path) -> Result<(), Unresolved> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Unresolved::NotExecutable),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(Unresolved::NotExecutable),
        Err(_) => return Err(Unresolved::NotFound),
    }
    let Ok(c) = std::ffi::CString::new(file.as_os_str().as_bytes()) else { return Err(Unresolved::NotFound) };
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(Unresolved::NotExecutable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn resolve_finds_what_a_shell_would_run_table() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let put = |dir: &Path, name: &str, mode: u32| {
            let f = dir.join(name);
            std::fs::write(&f, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            f
        };
        let only_b = put(&b, "cli", 0o755);
        put(&a, "plain", 0o644);
        let later = put(&b, "plain", 0o755);
        put(&a, "noexec", 0o600);
        std::fs::create_dir_all(a.join("dir")).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        // (program, PATH, expected)
        let table: Vec<(PathBuf, Option<&OsStr>, Result<PathBuf, Unresolved>)> = vec![
            ("cli".into(), Some(&path), Ok(only_b.clone())),
            // The first *executable* match wins; a non-executable earlier one is skipped.
            ("plain".into(), Some(&path), Ok(later)),
            ("missing".into(), Some(&path), Err(Unresolved::NotFound)),
            ("missing".into(), None, Err(Unresolved::NotFound)),
            ("".into(), Some(&path), Err(Unresolved::NotFound)),
            // A directory is never a program.
            ("dir".into(), Some(&path), Err(Unresolved::NotFound)),
            (a.join("dir"), Some(&path), Err(Unresolved::NotExecutable)),
            // A path is taken as it is, never looked up.
            (only_b.clone(), None, Ok(only_b.clone())),
            (tmp.path().join("a/cli"), Some(&path), Err(Unresolved::NotFound)),
        ];
        for (program, path, want) in table {
            assert_eq!(resolve(&program, path), want, "{}", program.display());
        }
        // No x bit: refused, to root as well (root needs one x bit to execute a file).
        assert_eq!(resolve(&a.join("noexec"), None), Err(Unresolved::NotExecutable));
        assert_eq!(resolve(Path::new("noexec"), Some(&path)), Err(Unresolved::NotExecutable));
    }

    #[test]
    fn the_step_gets_the_parent_then_the_program_and_its_arguments_verbatim() {
        let args = [OsString::from("-p"), OsString::from("a b"), OsString::from("--")];
        let got = step_args(42, Path::new("/usr/bin/claude"), &args);
        let want: Vec<OsString> = [SUBCOMMAND, "42", "/usr/bin/claude", "-p", "a b", "--"].iter().map(OsString::from).collect();
        assert_eq!(got, want);
    }
}
