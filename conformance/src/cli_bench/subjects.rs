//! The measured commands: `berth run --rm` and the crictl sequence (podman
//! is in [`super::podman`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CliBenchError;
use crate::harness::{self, images::BUSYBOX, Berth};

/// One subject of the benchmark.
pub trait Subject {
    /// The column name.
    fn name(&self) -> String;
    /// Version line(s) of what is measured.
    fn version(&self) -> String;
    /// One timed run (iteration `i`): the wall time of the whole sequence.
    fn once(&mut self, i: usize) -> Result<Duration, CliBenchError>;
    /// Removes what the runs left (errors are logged).
    fn cleanup(&mut self) {}
}

fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; its stdout on success.
pub fn exec(cmd: &mut Command) -> Result<String, CliBenchError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CliBenchError::Spawn {
            program: shown(cmd),
            source,
        })?;
    if !out.status.success() {
        return Err(CliBenchError::Failed {
            command: shown(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// First line of `program --version`, or why not.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text.lines().next().unwrap_or("").trim();
            format!("{}: {line}", program.display())
        }
        Err(e) => format!("{}: {e}", program.display()),
    }
}

/// `berth -H unix://<harness socket> run --rm busybox true`.
pub struct BerthRun {
    bin: PathBuf,
    host: String,
    image: String,
}

impl BerthRun {
    /// The CLI built beside this binary, aimed at the harness berthd.
    pub fn new(berth: &Berth) -> Result<BerthRun, CliBenchError> {
        Ok(BerthRun {
            bin: harness::locate(harness::cli::CLI_BIN)?,
            host: format!("unix://{}", berth.fp.socket.display()),
            image: BUSYBOX.reference(),
        })
    }
}

impl Subject for BerthRun {
    fn name(&self) -> String {
        "berth run --rm IMAGE true".into()
    }

    fn version(&self) -> String {
        version_of(&self.bin, &["--version"])
    }

    fn once(&mut self, _i: usize) -> Result<Duration, CliBenchError> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-H", &self.host, "run", "--rm", &self.image, "true"]);
        let t = Instant::now();
        exec(&mut cmd)?;
        Ok(t.elapsed())
    }
}

/// crictl `runp` + `create` + `start` + poll `inspect` until exited +
/// `rmp -f`, against the harness berthd.
pub struct Crictl {
    bin: PathBuf,
    endpoint: String,
    work: tempfile::TempDir,
    pod_logs: PathBuf,
    cgroup: String,
    pods: Vec<String>,
}

/// How long a `true` container may take to exit before the run fails.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

impl Crictl {
    /// crictl at `bin` talking to the harness berthd.
    pub fn new(berth: &Berth, bin: &Path) -> Result<Crictl, CliBenchError> {
        let work = tempfile::Builder::new()
            .prefix("bench-cli-crictl-")
            .tempdir()
            .map_err(|source| CliBenchError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let ctr = serde_ctr_json(&BUSYBOX.reference());
        let path = work.path().join("ctr.json");
        std::fs::write(&path, ctr).map_err(|source| CliBenchError::Write { path, source })?;
        Ok(Crictl {
            bin: bin.to_path_buf(),
            endpoint: format!("unix://{}", berth.fp.socket.display()),
            work,
            pod_logs: berth.pod_logs.clone(),
            cgroup: berth.fp.cgroup.clone(),
            pods: Vec::new(),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args([
            "--runtime-endpoint",
            &self.endpoint,
            "--image-endpoint",
            &self.endpoint,
            "--timeout",
            "30s",
        ]);
        c
    }
}

/// The container config crictl reads (CRI JSON field names).
fn serde_ctr_json(image: &str) -> String {
    format!(
        "{{\"metadata\":{{\"name\":\"c\"}},\"image\":{{\"image\":\"{image}\"}},\
         \"command\":[\"true\"],\"log_path\":\"c.log\",\"linux\":{{}}}}\n"
    )
}

/// A pod config like the harness's: its own log dir and cgroup parent,
/// pod network, container PID namespace.
fn pod_json(name: &str, uid: &str, log_dir: &Path, cgroup_parent: &str) -> String {
    format!(
        "{{\"metadata\":{{\"name\":\"{name}\",\"uid\":\"{uid}\",\"namespace\":\"bench-cli\",\"attempt\":0}},\
         \"hostname\":\"{name}\",\"log_directory\":\"{}\",\
         \"linux\":{{\"cgroup_parent\":\"{cgroup_parent}\",\
         \"security_context\":{{\"namespace_options\":{{\"network\":0,\"pid\":1,\"ipc\":0}}}}}}}}\n",
        log_dir.display()
    )
}

impl Subject for Crictl {
    fn name(&self) -> String {
        "crictl runp+create+start+wait+rmp".into()
    }

    fn version(&self) -> String {
        version_of(&self.bin, &["--version"])
    }

    fn once(&mut self, i: usize) -> Result<Duration, CliBenchError> {
        let uid = harness::random_hex(8);
        let log_dir = self.pod_logs.join(&uid);
        std::fs::create_dir_all(&log_dir).map_err(|source| CliBenchError::Write {
            path: log_dir.clone(),
            source,
        })?;
        let pod_path = self.work.path().join(format!("pod-{i}.json"));
        let text = pod_json(
            &format!("bench-cli-{i}"),
            &uid,
            &log_dir,
            &format!("/{}/pod{uid}", self.cgroup),
        );
        std::fs::write(&pod_path, text).map_err(|source| CliBenchError::Write {
            path: pod_path.clone(),
            source,
        })?;
        let ctr_path = self.work.path().join("ctr.json");

        let t = Instant::now();
        let pod = exec(self.cmd().arg("runp").arg(&pod_path))?
            .trim()
            .to_string();
        self.pods.push(pod.clone());
        let ctr = exec(
            self.cmd()
                .args(["create", &pod])
                .arg(&ctr_path)
                .arg(&pod_path),
        )?
        .trim()
        .to_string();
        exec(self.cmd().args(["start", &ctr]))?;
        let polled = Instant::now();
        loop {
            let state = exec(self.cmd().args([
                "inspect",
                "-o",
                "go-template",
                "--template",
                "{{.status.state}}",
                &ctr,
            ]))?;
            if state.trim() == "CONTAINER_EXITED" {
                break;
            }
            if polled.elapsed() > EXIT_TIMEOUT {
                return Err(CliBenchError::NeverExited {
                    what: "crictl",
                    id: ctr,
                    waited: polled.elapsed(),
                });
            }
        }
        exec(self.cmd().args(["rmp", "-f", &pod]))?;
        let took = t.elapsed();
        self.pods.pop();
        Ok(took)
    }

    fn cleanup(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            if let Err(e) = exec(self.cmd().args(["rmp", "-f", &pod])) {
                tracing::warn!(%pod, error = %e, "removing a benchmark pod");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_json() {
        let v: serde_json::Value = serde_json::from_str(&serde_ctr_json("a/b:1")).unwrap();
        assert_eq!(v["image"]["image"], "a/b:1");
        let p = pod_json("n", "u", Path::new("/l"), "/cg/podu");
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["linux"]["cgroup_parent"], "/cg/podu");
        assert_eq!(
            v["linux"]["security_context"]["namespace_options"]["pid"],
            1
        );
    }
}
