//! `events`: JSON lines of stats every interval and OOM events.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use berth_runtime::container::{Container, Event};

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stats interval (Go duration: 500ms, 5s, 1m).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Print stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Container id.
    pub container_id: String,
}

/// Parses a simple Go-style duration ("250ms", "5s", "1m", "1h", "1.5s").
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .context("duration needs a unit (ms, s, m, h)")?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid duration unit in {s:?}"),
    };
    if secs <= 0.0 || !secs.is_finite() {
        bail!("duration must be positive: {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `events`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let c = Container::load(root, &a.container_id)?;
    let id = c.id().to_string();
    if a.stats {
        let stats = c.stats()?;
        println!("{}", Event::Stats(Box::new(stats)).to_json(&id));
        return Ok(());
    }
    let interval = parse_duration(&a.interval)?;
    let mut out = std::io::stdout().lock();
    c.events(interval, &mut |ev| {
        writeln!(out, "{}", ev.to_json(&id)).is_ok() && out.flush().is_ok()
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
