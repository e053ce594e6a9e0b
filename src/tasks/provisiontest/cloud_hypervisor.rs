//! The `cloud-hypervisor` backend, as zos nodes run it.
//!
//! The VM is described on the command line (kernel, initramfs, command line,
//! `--cpus boot=1`, `--memory size=512M`, no `--net`), the serial console
//! goes to standard output (`--serial tty`, `--console off`), and the
//! process serves its REST API on a unix socket in the run's directory
//! (`--api-socket path=...`). Through that socket the task learns that the
//! VM runs (`GET /api/v1/vmm.ping`, then `GET /api/v1/vm.info` until its
//! `state` is `Running`) and stops it (`PUT /api/v1/vm.shutdown`, then
//! `PUT /api/v1/vmm.shutdown`, on which the process exits). zos stops at the
//! ping; this task goes on to wait for the guest's marker.
//!
//! The API is HTTP/1.1 over the unix socket, one request per connection.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use nix::unistd::Pid;

use super::backend::{Backend, VmSpec};
use super::error::{ApiError, ApiProblem, HypervisorError};

/// The API socket's name in the run's directory.
pub(crate) const API_SOCKET: &str = "api.sock";
/// One API request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest API answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// Between two looks while the VM comes up.
const POLL: Duration = Duration::from_millis(50);

pub(crate) struct CloudHypervisor {
    program: PathBuf,
}

impl CloudHypervisor {
    pub fn new(program: PathBuf) -> CloudHypervisor {
        CloudHypervisor { program }
    }
}

impl Backend for CloudHypervisor {
    fn program(&self) -> &Path {
        &self.program
    }

    fn args(&self, spec: &VmSpec, run_dir: &Path) -> Vec<OsString> {
        let kv = |key: &str, path: &Path| {
            let mut s = OsString::from(key);
            s.push(path);
            s
        };
        let mut a: Vec<OsString> = vec![
            "--api-socket".into(),
            kv("path=", &run_dir.join(API_SOCKET)),
            "--kernel".into(),
            spec.kernel.clone().into(),
            "--initramfs".into(),
            spec.initramfs.clone().into(),
            "--cmdline".into(),
            spec.cmdline.clone().into(),
            "--cpus".into(),
            format!("boot={}", spec.vcpus).into(),
            "--memory".into(),
            format!("size={}M", spec.memory_mib).into(),
            "--serial".into(),
            "tty".into(),
            "--console".into(),
            "off".into(),
        ];
        if let Some(disk) = &spec.disk {
            // Commas in paths are refused by the configuration.
            let mut d = kv("path=", disk);
            d.push(",readonly=on");
            a.push("--disk".into());
            a.push(d);
        }
        a
    }

    fn ready<'a>(&'a self, run_dir: &'a Path) -> BoxFuture<'a, Result<(), HypervisorError>> {
        async move {
            let socket = run_dir.join(API_SOCKET);
            // The socket appears once the API thread runs; until then every
            // connect fails, which is not yet an error.
            loop {
                let last = match api(&socket, Method::GET, "vmm.ping").await {
                    Ok((StatusCode::OK, _)) => break,
                    // It answered, and said no: waiting will not help.
                    Ok((status, body)) => return Err(answer_error("vmm.ping", status, &body)),
                    Err(e) => e,
                };
                tracing::trace!(%last, "API not answering yet");
                tokio::time::sleep(POLL).await;
            }
            loop {
                let (status, body) = api(&socket, Method::GET, "vm.info").await?;
                if status != StatusCode::OK {
                    return Err(answer_error("vm.info", status, &body));
                }
                let info: serde_json::Value =
                    serde_json::from_slice(&body).map_err(HypervisorError::InfoNotJson)?;
                match info.get("state").and_then(|s| s.as_str()) {
                    Some("Running") => return Ok(()),
                    Some("Created") | Some("Booting") => tokio::time::sleep(POLL).await,
                    other => return Err(HypervisorError::State(other.map(str::to_string))),
                }
            }
        }
        .boxed()
    }

    fn stop<'a>(
        &'a self,
        run_dir: &'a Path,
        _pid: Pid,
    ) -> BoxFuture<'a, Result<(), HypervisorError>> {
        async move {
            let socket = run_dir.join(API_SOCKET);
            // The VM may already be off (the guest powered down): only the
            // VMM's shutdown must succeed.
            if let Ok((status, body)) = api(&socket, Method::PUT, "vm.shutdown").await {
                if !status.is_success() {
                    tracing::debug!(answer = %answer_error("vm.shutdown", status, &body), "VM already stopped");
                }
            }
            let (status, body) = api(&socket, Method::PUT, "vmm.shutdown").await?;
            if status.is_success() {
                Ok(())
            } else {
                Err(answer_error("vmm.shutdown", status, &body))
            }
        }
        .boxed()
    }
}

fn answer_error(endpoint: &'static str, status: StatusCode, body: &[u8]) -> HypervisorError {
    HypervisorError::Refused {
        endpoint,
        status,
        body: super::guest::printable(body),
    }
}

/// One request to `http://localhost/api/v1/<endpoint>` over the socket.
pub async fn api(
    socket: &Path,
    method: Method,
    endpoint: &str,
) -> Result<(StatusCode, Bytes), ApiError> {
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(ApiProblem::Connect)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(ApiProblem::Handshake)?;
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            // Origin form, as cloud-hypervisor's HTTP server expects.
            .uri(format!("/api/v1/{endpoint}"))
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(ApiProblem::Build)?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(ApiProblem::Send)?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(ApiProblem::Answer)?
            .to_bytes();
        driver.abort();
        Ok::<_, ApiProblem>((status, body))
    };
    let problem = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => return Ok(answer),
        Ok(Err(problem)) => problem,
        Err(_) => ApiProblem::Timeout(REQUEST_TIMEOUT),
    };
    Err(ApiError {
        endpoint: endpoint.to_string(),
        socket: socket.to_path_buf(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::super::config::Accel;
    use super::*;

    #[test]
    fn the_command_line_describes_the_vm_and_the_api_socket() {
        let ch = CloudHypervisor::new("cloud-hypervisor".into());
        let spec = VmSpec {
            kernel: "/g/vmlinuz".into(),
            initramfs: "/g/initrd".into(),
            disk: Some("/g/disk.raw".into()),
            cmdline: "console=ttyS0 zosperf.marker=ab".into(),
            accel: Accel::Kvm,
            vcpus: 1,
            memory_mib: 512,
        };
        let args: Vec<String> = ch
            .args(&spec, Path::new("/run/zos-perf/provisiontest-ab"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--api-socket",
                "path=/run/zos-perf/provisiontest-ab/api.sock",
                "--kernel",
                "/g/vmlinuz",
                "--initramfs",
                "/g/initrd",
                "--cmdline",
                "console=ttyS0 zosperf.marker=ab",
                "--cpus",
                "boot=1",
                "--memory",
                "size=512M",
                "--serial",
                "tty",
                "--console",
                "off",
                "--disk",
                "path=/g/disk.raw,readonly=on",
            ]
        );
    }
}
