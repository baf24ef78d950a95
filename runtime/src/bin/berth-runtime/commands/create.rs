//! `create`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_runtime::container::{Container, CreateOptions};

/// Flags shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket receiving the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container init's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Enter the rootfs with MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra fds (from 3) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

/// `create` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Container id.
    pub container_id: String,
}

impl CreateFlags {
    /// Library options for container `id`.
    pub fn options(&self, root: &Path, id: &str) -> CreateOptions {
        CreateOptions {
            id: id.to_string(),
            bundle: self.bundle.clone(),
            root: root.to_path_buf(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            preserve_fds: self.preserve_fds,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            stdio: None,
        }
    }
}

/// Runs `create`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let opts = a.flags.options(root, &a.container_id);
    Container::create(&opts).with_context(|| format!("creating container {}", a.container_id))?;
    Ok(())
}
