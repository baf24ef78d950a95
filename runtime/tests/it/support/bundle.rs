//! OCI bundle builder: a temp dir with a busybox-static rootfs and a config.json
//! defaulting to what `runc spec` writes (but `terminal: false`).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Debian's busybox-static, copied (not linked) so a writable rootfs cannot modify the host's.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Applets the tests call; each is a relative symlink to /bin/busybox in the rootfs.
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "cat",
    "echo",
    "id",
    "hostname",
    "mkdir",
    "touch",
    "head",
    "tail",
    "dd",
    "sleep",
    "grep",
    "wc",
    "readlink",
    "env",
    "pwd",
    "tty",
    "seq",
    "ps",
    "true",
    "false",
    "stat",
    "sed",
    "cut",
    "tr",
    "sort",
    "kill",
    "test",
    "[",
    "stty",
    "printf",
    "rm",
    "ln",
    "ls",
    "chmod",
    "uname",
    "mount",
    "umask",
    "awk",
    "nproc",
    "yes",
    "basename",
    "xargs",
    "timeout",
    "uniq",
    "domainname",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
user:x:1000:1000:Test User:/home/user:/bin/sh\n\
other:x:1001:1001:Other:/home/other:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
tty:x:5:\n\
wheel:x:10:user\n\
dialout:x:20:user\n\
user:x:1000:\n\
other:x:1001:\n\
nogroup:x:65534:\n";

/// A bundle directory (removed on drop) and the config that `write_config` serialises.
pub struct Bundle {
    dir: TempDir,
    config: Value,
}

impl Bundle {
    /// A fresh bundle running `sh` with runc's default spec values.
    pub fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-it-bundle-")
            .tempdir()
            .unwrap();
        let b = Bundle {
            dir,
            config: default_config(),
        };
        b.build_rootfs();
        b
    }

    /// The bundle directory (absolute).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory (absolute).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// Runs `script` with `sh -c`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Sets the value at a JSON pointer, creating intermediate objects.
    pub fn set(&mut self, pointer: &str, v: Value) -> &mut Self {
        set_pointer(&mut self.config, pointer, v);
        self
    }

    /// Removes the value at a JSON pointer (no-op when absent).
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = self.config.pointer_mut(parent) {
            m.remove(key);
        }
        self
    }

    /// Appends a mount entry.
    pub fn mount(&mut self, dest: &str, typ: &str, source: &str, options: &[&str]) -> &mut Self {
        let m = json!({"destination": dest, "type": typ, "source": source, "options": options});
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }

    /// Sets a `linux.resources` member, e.g. `resource("memory", json!({"limit": 1}))`.
    pub fn resource(&mut self, key: &str, v: Value) -> &mut Self {
        self.set(&format!("/linux/resources/{key}"), v)
    }

    /// Adds a namespace (optionally joined by path) unless one of that type is there.
    pub fn namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        let nss = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != typ);
        let mut ns = json!({ "type": typ });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        nss.push(ns);
        self
    }

    /// Drops a namespace type from the list.
    pub fn without_namespace(&mut self, typ: &str) -> &mut Self {
        let nss = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != typ);
        self
    }

    /// Writes a file inside the rootfs (parents created).
    pub fn rootfs_file(&self, rel: &str, contents: &str) -> &Self {
        let p = self.rootfs().join(rel.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap();
        self
    }

    /// Creates a directory inside the rootfs.
    pub fn rootfs_dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.rootfs().join(rel.trim_start_matches('/'))).unwrap();
        self
    }

    /// Creates a symlink `rel` inside the rootfs pointing at `target` (verbatim).
    pub fn rootfs_symlink(&self, rel: &str, target: &str) -> &Self {
        symlink(target, self.rootfs().join(rel.trim_start_matches('/'))).unwrap();
        self
    }

    /// Serialises the config to `<bundle>/config.json`.
    pub fn write_config(&self) {
        let s = serde_json::to_string_pretty(&self.config).unwrap();
        fs::write(self.dir.path().join("config.json"), s).unwrap();
    }

    fn build_rootfs(&self) {
        let root = self.rootfs();
        for d in [
            "bin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "root",
            "home/user",
            "home/other",
            "var",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::copy(HOST_BUSYBOX, root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        fs::write(root.join("etc/group"), GROUP).unwrap();
    }
}

fn set_pointer(root: &mut Value, pointer: &str, v: Value) {
    let mut cur = root;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let (last, dirs) = parts.split_last().unwrap();
    for p in dirs {
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
    cur[*last] = v;
}

/// `runc spec` (1.1) output with `terminal: false` and `sh` as the process.
pub fn default_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
