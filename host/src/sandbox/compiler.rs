//! Where Cranelift runs: in this process, or in a short-lived child of this same binary.
//!
//! Compiling a component allocates tens of MiB on several threads and frees nearly all of
//! it, but glibc keeps the freed pages spread over per-thread arenas and Cranelift's own code
//! pages stay touched: a daemon that compiled its two built-in components at first start idled
//! at 33–67 MiB (varying with which threads allocated where), one that loaded the same code
//! from its cache at 23 MiB. The daemon therefore compiles in a child (`orgx-peer
//! compile-component`, hidden): WebAssembly in on stdin, wasmtime's precompiled artifact out on
//! stdout, and the compiler's memory leaves with the child. The same move contains a
//! compiler crash or OOM on hostile bytes to the child: the push is refused, the peer serves on.
//!
//! The artifact is loaded with `Component::deserialize`, which skips WebAssembly validation;
//! that is sound because the child is this peer's own executable with the same engine
//! configuration, reading bytes the parent chose and answering on a private pipe — the same
//! trust as the code cache. wasmtime refuses an artifact from a different version or
//! configuration (an upgraded binary on disk); the parent then compiles in-process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use wasmtime::component::Component;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-component";

/// How many bytes of the child's stderr a refusal quotes.
const STDERR_QUOTE: usize = 2000;

/// Where a sandbox compiles components.
#[derive(Clone, Debug, Default)]
pub enum Compiler {
    /// On this process's threads: one-shot commands, tests, benches.
    #[default]
    InProcess,
    /// In a child running `exe compile-component` (the daemon: `std::env::current_exe()`).
    Subprocess { exe: PathBuf },
}

/// A compile that failed: the bytes are not a valid component, or the child failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("the compiler process {0}")]
    Child(String),
}

impl Compiler {
    /// Compile `bytes` for `engine`.
    pub fn compile(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Component, CompileError> {
        match self {
            Compiler::InProcess => in_process(engine, bytes),
            Compiler::Subprocess { exe } => {
                let code = match in_child(exe, bytes) {
                    Ok(code) => code,
                    // Not this component's fault (the binary was replaced or removed by an
                    // upgrade, no processes left): compile it here rather than refuse it.
                    Err(Failure::Spawn(e)) => {
                        tracing::warn!(exe = %exe.display(), "cannot start the compiler process ({e}); compiling in-process");
                        return in_process(engine, bytes);
                    }
                    Err(Failure::Compile(e)) => return Err(e),
                };
                // SAFETY: `code` is `Engine::precompile_component` output of this peer's own
                // executable (module note); wasmtime checks version and configuration itself.
                match unsafe { Component::deserialize(engine, &code) } {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        tracing::warn!(exe = %exe.display(), "the compiler process's code does not fit this engine ({e:#}); compiling in-process");
                        in_process(engine, bytes)
                    }
                }
            }
        }
    }
}

fn in_process(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Component, CompileError> {
    Component::new(engine, bytes).map_err(|e| CompileError::Invalid(format!("{e:#}")))
}

/// Why the child gave no code: it could not start, or it answered with an error.
enum Failure {
    Spawn(std::io::Error),
    Compile(CompileError),
}

fn in_child(exe: &PathBuf, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
    // A clean environment: nothing of the daemon's (the API key least of all) reaches the
    // child; the one setting that changes the engine's configuration is passed on.
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(v) = std::env::var_os(super::engine::PERFMAP_ENV) {
        cmd.env(super::engine::PERFMAP_ENV, v);
    }
    let mut child = cmd.spawn().map_err(Failure::Spawn)?;
    // Its status is ours to take, not the orphan reaper's.
    let pid = child.id() as i32;
    crate::own_children::register(pid);
    let result = talk(&mut child, bytes);
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    crate::own_children::forget(pid);
    result.map_err(Failure::Compile)
}

/// Feed the child its bytes and read its answer. Neither side is copied whole once more: the
/// input is written from where the caller holds it, and the answer (its length first) is
/// read into a buffer of its size. A prepared matcher's snapshot is tens of MiB, and the
/// peer's peak memory is bounded (`tests/hostile_server.rs`).
fn talk(child: &mut Child, bytes: &[u8]) -> Result<Vec<u8>, CompileError> {
    let io = |e: std::io::Error| CompileError::Child(format!("could not be talked to: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let (read, stderr) = std::thread::scope(|s| {
        // Written from a thread: the child may answer (an early error) before reading it all.
        let writer =
            std::thread::Builder::new().name("orgx-compile-in".into()).spawn_scoped(s, move || stdin.write_all(bytes)).map_err(io)?;
        let errors = std::thread::Builder::new()
            .name("orgx-compile-err".into())
            .spawn_scoped(s, move || {
                let mut s = Vec::new();
                let _ = stderr.read_to_end(&mut s);
                s
            })
            .map_err(io)?;
        let read = read_answer(&mut stdout, bytes.len());
        let _ = writer.join();
        Ok::<_, CompileError>((read, errors.join().unwrap_or_default()))
    })?;
    let status = child.wait().map_err(io)?;
    let stderr = String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_QUOTE)]).trim().to_string();
    match status.code() {
        Some(0) if read.is_ok() => Ok(read.unwrap_or_default()),
        Some(c) if c == i32::from(EXIT_INVALID) => Err(CompileError::Invalid(stderr)),
        _ => Err(CompileError::Child(format!(
            "ended with {status} before answering{}; the component was not loaded (if it is one the peer should run, report this with the peer's log)",
            if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
        ))),
    }
}

/// The child's answer: its length (8 bytes, little-endian), then that many bytes. An answer
/// that does not look like one (a length past what any compile of `input` bytes gives) is
/// returned as it came, for `Component::deserialize` to refuse.
fn read_answer(stdout: &mut impl Read, input: usize) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match stdout.read(&mut head[got..])? {
            0 => return Ok(head[..got].to_vec()),
            n => got += n,
        }
    }
    let len = u64::from_le_bytes(head);
    // Machine code is a few times the WebAssembly at most; data segments are copied as they are.
    let plausible = (input as u64).saturating_mul(16).saturating_add(64 << 20);
    let mut code = if len <= plausible { Vec::with_capacity(len as usize) } else { head.to_vec() };
    stdout.read_to_end(&mut code)?;
    Ok(code)
}

/// The child's exit code for bytes that are not a valid component (`main` exits with it;
/// any other failure is exit 1).
pub const EXIT_INVALID: u8 = 65;

/// The child's side: WebAssembly on stdin; on stdout the artifact's length (8 bytes,
/// little-endian), then the artifact.
pub fn child_main() -> Result<(), CompileError> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| CompileError::Child(format!("cannot read the component from stdin: {e}")))?;
    let engine = super::engine::SandboxEngine::new().map_err(|e| CompileError::Child(format!("{e:#}")))?;
    let code = engine.engine().precompile_component(&bytes).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    let mut out = std::io::stdout().lock();
    let written = out.write_all(&(code.len() as u64).to_le_bytes()).and_then(|()| out.write_all(&code)).and_then(|()| out.flush());
    written.map_err(|e| CompileError::Child(format!("cannot write the compiled code to stdout: {e}")))
}
