//! What goes wrong in a provisiontest run, one type per stage: the work
//! directory, the hypervisor's start, its API or signal, the boot, the
//! teardown. Each text is what the task's `errors` list carries
//! (docs/tasks/provisiontest.md), so they say what and where.

use std::path::PathBuf;
use std::time::Duration;

use hyper::StatusCode;
use nix::unistd::Pid;

/// The work directory or the run's directory inside it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunDirError {
    #[error("cannot create the work directory {}: {error}", .path.display())]
    CreateWorkDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("work directory {}: {error}", .path.display())]
    WorkDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("work directory {}: not a directory (or a link)", .0.display())]
    NotADirectory(PathBuf),
    #[error("work directory {}: others could write to it (owner uid {uid}, mode {mode:o})",
        .path.display())]
    Writable { path: PathBuf, uid: u32, mode: u32 },
    #[error("cannot create {}: {error}", .path.display())]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot remove {}: {error}", .path.display())]
    Remove {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The hypervisor process did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot start {}: {error}", .program.display())]
    Spawn {
        program: PathBuf,
        error: std::io::Error,
    },
    #[error("{} exited at once", .0.display())]
    ExitedAtOnce(PathBuf),
}

/// A backend's answer to "are you running?" or "stop" ([`Backend`]).
///
/// [`Backend`]: super::backend::Backend
#[derive(Debug, thiserror::Error)]
pub(crate) enum HypervisorError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The API answered, and said no.
    #[error("cloud-hypervisor API {endpoint}: {status}: {body}")]
    Refused {
        endpoint: &'static str,
        status: StatusCode,
        /// The answer's body, printable.
        body: String,
    },
    #[error("cloud-hypervisor API vm.info: not JSON: {0}")]
    InfoNotJson(serde_json::Error),
    #[error("cloud-hypervisor API vm.info: VM state {0:?}, expected \"Running\"")]
    State(Option<String>),
    #[error("SIGTERM to qemu {pid}: {error}")]
    Signal { pid: Pid, error: nix::Error },
    /// Waiting for the stopped hypervisor to exit.
    #[error("{0}")]
    Wait(std::io::Error),
}

/// One request to cloud-hypervisor's API socket that got no answer.
#[derive(Debug, thiserror::Error)]
#[error("cloud-hypervisor API {endpoint} on {}: {problem}", .socket.display())]
pub struct ApiError {
    pub endpoint: String,
    pub socket: PathBuf,
    pub problem: ApiProblem,
}

/// Which step of an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiProblem {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("request: {0}")]
    Build(hyper::http::Error),
    #[error("request: {0}")]
    Send(hyper::Error),
    /// The body failed or passed its cap.
    #[error("answer: {0}")]
    Answer(Box<dyn std::error::Error + Send + Sync>),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Why no marker was seen on the guest's console.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootError {
    #[error("hypervisor start failed: no serial console pipe")]
    NoConsole,
    #[error("hypervisor start failed: {0}")]
    NotReady(HypervisorError),
    #[error("cancelled during the boot")]
    Cancelled,
    #[error("{0}")]
    Exited(Exit),
    /// The console closed; how the hypervisor ended, then the console's end.
    #[error("{exit}; {console}")]
    ConsoleClosed { exit: Exit, console: String },
    #[error("no marker within {}: {console}", humantime::format_duration(*.deadline))]
    NoMarker { deadline: Duration, console: String },
}

/// A hypervisor that ended before the marker. With `kvm`, an exit whose
/// words name KVM is the KVM failing.
#[derive(Debug)]
pub(crate) struct Exit {
    pub kvm_failed: bool,
    pub program: PathBuf,
    pub status: String,
    /// The end of its standard error, printable; may be empty.
    pub stderr: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (program, status) = (self.program.display(), &self.status);
        if self.kvm_failed {
            write!(f, "KVM unusable: {program} ended ({status})")?;
        } else {
            write!(
                f,
                "hypervisor exited before the guest's marker: {program} ended ({status})"
            )?;
        }
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

/// What a teardown found left, each problem in order.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub(crate) struct TeardownError(pub Vec<TeardownProblem>);

#[derive(Debug, thiserror::Error)]
pub(crate) enum TeardownProblem {
    #[error("cannot reap the hypervisor: {0}")]
    Reap(std::io::Error),
    #[error("processes {pids:?} of group {pgid} still run after SIGKILL")]
    Left { pids: Vec<i32>, pgid: Pid },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

/// A file of the test guest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuestFileError {
    #[error("{}: not a regular file", .0.display())]
    NotRegular(PathBuf),
    #[error("{}: {error}", .path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A program that cannot be run ([`find_program`]).
///
/// [`find_program`]: super::find_program
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error("{}: not found or not executable", .0.display())]
    NotExecutable(PathBuf),
    #[error("{}: not found in PATH", .0.display())]
    NotInPath(PathBuf),
}
