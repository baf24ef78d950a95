//! `login` / `logout`: credentials checked by berthd, stored by the CLI
//! in its 0600 credentials file.

use std::io::{BufRead, Write};

use berth_proto::berth::v1::{LoginRequest, RegistryAuth};
use clap::Args;

use super::Ctx;
use crate::auth::{self, AuthFile, Credential};
use crate::error::{CliError, DaemonResult};

/// `berth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Registry server (default docker.io)
    pub server: Option<String>,
}

/// `berth logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry server (default docker.io)
    pub server: Option<String>,
}

fn prompt(what: &str) -> std::io::Result<String> {
    eprint!("{what}: ");
    std::io::stderr().flush()?;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

/// Reads a password from the terminal without echo.
fn prompt_password() -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).ok();
    if let Some(s) = &saved {
        let mut quiet = s.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let r = prompt("Password");
    if let Some(s) = &saved {
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, s);
        eprintln!();
    }
    Ok(r?)
}

/// `berth login`.
pub async fn login(ctx: &Ctx, a: LoginArgs) -> anyhow::Result<()> {
    let registry = auth::normalize_registry(a.server.as_deref().unwrap_or(""));
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password_stdin && a.password.is_some() {
        return Err(CliError::Usage(
            "--password and --password-stdin are mutually exclusive".into(),
        )
        .into());
    }
    if a.password_stdin && a.username.is_none() {
        return Err(CliError::Usage("Must provide --username with --password-stdin".into()).into());
    }
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username")?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        match a.password {
            Some(p) => p,
            None => prompt_password()?,
        }
    };
    if username.is_empty() || password.is_empty() {
        return Err(CliError::Usage("username and password are required".into()).into());
    }
    let d = ctx.daemon().await?;
    let r = d
        .images
        .clone()
        .login(LoginRequest {
            registry: if registry == auth::DEFAULT_REGISTRY {
                String::new()
            } else {
                registry.clone()
            },
            auth: Some(RegistryAuth {
                username: username.clone(),
                password: password.clone(),
                identity_token: String::new(),
            }),
        })
        .await
        .daemon()?;
    let key = if r.registry.is_empty() {
        registry
    } else {
        auth::normalize_registry(&r.registry)
    };
    let path = auth::default_path()?;
    let mut file = AuthFile::load(&path)?;
    file.auths.insert(key, Credential { username, password });
    file.save(&path)?;
    println!("Login Succeeded");
    Ok(())
}

/// `berth logout`.
pub fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let registry = auth::normalize_registry(a.server.as_deref().unwrap_or(""));
    let path = auth::default_path()?;
    let mut file = AuthFile::load(&path)?;
    if file.auths.remove(&registry).is_none() {
        println!("Not logged in to {registry}");
        return Ok(());
    }
    file.save(&path)?;
    println!("Removing login credentials for {registry}");
    Ok(())
}
