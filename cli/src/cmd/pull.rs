//! `pull` and `push` with per-layer progress.

use berth_proto::berth::v1::{
    pull_progress, push_progress, PullDone, PullRequest, PushRequest, RegistryAuth,
};
use clap::Args;
use tokio_stream::StreamExt;

use super::Ctx;
use crate::auth;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::progress::{mode_for, Op, Progress};
use crate::term;

/// `berth pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image reference (NAME[:TAG|@DIGEST])
    pub image: String,
}

/// `berth push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image reference (NAME[:TAG])
    pub image: String,
}

/// Stored credentials for the registry `reference` names.
pub fn auth_for(reference: &str) -> Option<RegistryAuth> {
    let path = auth::default_path().ok()?;
    let file = match auth::AuthFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("WARNING: {e}");
            return None;
        }
    };
    let c = file.auths.get(&auth::registry_of(reference))?;
    Some(RegistryAuth {
        username: c.username.clone(),
        password: c.password.clone(),
        identity_token: String::new(),
    })
}

/// Pulls `image` showing progress on stderr (`run`) or stdout (`pull`).
pub async fn pull_image(
    d: &Daemon,
    image: &str,
    to_stderr: bool,
    quiet: bool,
) -> anyhow::Result<PullDone> {
    let tty = if to_stderr {
        term::stderr_is_tty()
    } else {
        term::stdout_is_tty()
    };
    let color = if to_stderr {
        term::stderr_color()
    } else {
        term::stdout_color()
    };
    let mut stream = d
        .images
        .clone()
        .pull(PullRequest {
            image: image.to_owned(),
            auth: auth_for(image),
        })
        .await
        .no_such("image", image)?;
    let mut p = Progress::new(Op::Pull, mode_for(tty, quiet), color, to_stderr);
    let say = |s: String| {
        if quiet {
        } else if to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    let tag = image.rsplit_once(':').filter(|(_, t)| !t.contains('/'));
    if tag.is_none() && !image.contains('@') {
        say("Using default tag: latest".into());
    }
    let mut layers = Vec::new();
    let done = loop {
        match stream.next().await {
            Some(Ok(m)) => match m.event {
                Some(pull_progress::Event::Layers(l)) => {
                    layers = l.layers.clone();
                    p.layers(&l.layers);
                }
                Some(pull_progress::Event::Layer(l)) => p.update(&l),
                Some(pull_progress::Event::Done(done)) => break done,
                None => {}
            },
            Some(Err(s)) => {
                p.finish();
                return Err(CliError::from_status(s, Some(("image", image))).into());
            }
            None => {
                p.finish();
                return Err(anyhow::anyhow!(
                    "the pull of {image} ended without a result (berthd closed the stream)"
                ));
            }
        }
    };
    p.finish();
    let digest = done
        .repo_digest
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("");
    if !digest.is_empty() {
        say(format!("Digest: {digest}"));
    }
    if p.all_existed(&layers) {
        say(format!("Status: Image is up to date for {image}"));
    } else {
        say(format!("Status: Downloaded newer image for {image}"));
    }
    Ok(done)
}

/// `berth pull`.
pub async fn pull(ctx: &Ctx, a: PullArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let done = pull_image(&d, &a.image, false, a.quiet).await?;
    println!(
        "{}",
        if done.reference.is_empty() {
            &a.image
        } else {
            &done.reference
        }
    );
    Ok(())
}

/// `berth push`.
pub async fn push(ctx: &Ctx, a: PushArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let tty = term::stdout_is_tty();
    let mut stream = d
        .images
        .clone()
        .push(PushRequest {
            image: a.image.clone(),
            target: String::new(),
            auth: auth_for(&a.image),
        })
        .await
        .no_such("image", &a.image)?;
    if !a.quiet {
        println!(
            "The push refers to repository [{}]",
            super::images::split_tag(&a.image).0
        );
    }
    let mut p = Progress::new(
        Op::Push,
        mode_for(tty, a.quiet),
        term::stdout_color(),
        false,
    );
    let done = loop {
        match stream.next().await {
            Some(Ok(m)) => match m.event {
                Some(push_progress::Event::Layers(l)) => p.layers(&l.layers),
                Some(push_progress::Event::Layer(l)) => p.update(&l),
                Some(push_progress::Event::Done(done)) => break done,
                None => {}
            },
            Some(Err(s)) => {
                p.finish();
                return Err(CliError::from_status(s, Some(("image", &a.image))).into());
            }
            None => {
                p.finish();
                return Err(anyhow::anyhow!(
                    "the push of {} ended without a result (berthd closed the stream)",
                    a.image
                ));
            }
        }
    };
    p.finish();
    let tag = done
        .reference
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("latest");
    if a.quiet {
        println!("{}", done.reference);
    } else {
        println!("{tag}: digest: {} size: {}", done.digest, done.size);
    }
    Ok(())
}
