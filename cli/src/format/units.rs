//! Human-readable sizes and durations, the way Docker prints them
//! (SI sizes with three significant digits, "2 minutes ago", "Up 3 seconds").

use std::time::Duration;

const SI_UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
const BINARY_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `%.{precision}g` of Go/C: `precision` significant digits, trailing zeros
/// dropped, exponent form when the number does not fit.
pub fn format_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let p = precision.max(1);
    // Round first: the exponent is the rounded value's (999.9 -> 1e+03).
    let sci = format!("{:.*e}", p - 1, value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_owned()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn scaled(size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// SI size with three significant digits: `4.26MB`, `1.23kB`, `100B`
/// (docker's `images`, `ps -s`, `system df`).
pub fn human_size(bytes: u64) -> String {
    let (v, unit) = scaled(bytes as f64, 1000.0, &SI_UNITS);
    format!("{}{unit}", format_g(v, 3))
}

/// Binary size with four significant digits: `1.5MiB`, `1.944GiB`
/// (docker's `stats`).
pub fn binary_size(bytes: u64) -> String {
    let (v, unit) = scaled(bytes as f64, 1024.0, &BINARY_UNITS);
    format!("{}{unit}", format_g(v, 4))
}

/// Docker's `HumanDuration`: "Less than a second", "3 seconds",
/// "About a minute", "5 minutes", "About an hour", "3 hours", "4 days"...
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if secs < 1 {
        "Less than a second".to_owned()
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".to_owned()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// "2 minutes ago" for a time in seconds since the epoch (0: empty).
pub fn ago(epoch_secs: i64, now: i64) -> String {
    if epoch_secs <= 0 {
        return String::new();
    }
    let d = Duration::from_secs(now.saturating_sub(epoch_secs).max(0) as u64);
    format!("{} ago", human_duration(d))
}

/// Docker's CreatedAt: `2024-01-02 15:04:05 +0000 UTC`.
pub fn created_at(epoch_secs: i64) -> String {
    match chrono::DateTime::from_timestamp(epoch_secs, 0) {
        Some(t) if epoch_secs > 0 => t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        _ => String::new(),
    }
}

/// RFC 3339 with nanoseconds (docker's inspect and `logs -t`).
pub fn rfc3339_nanos(epoch_nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(
        epoch_nanos.div_euclid(1_000_000_000),
        epoch_nanos.rem_euclid(1_000_000_000) as u32,
    );
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_go() {
        assert_eq!(format_g(4.261234, 3), "4.26");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(12.0, 3), "12");
        assert_eq!(format_g(1.5, 4), "1.5");
        assert_eq!(format_g(999.9, 3), "1e+03");
        assert_eq!(format_g(0.0, 3), "0");
        assert_eq!(format_g(0.5, 3), "0.5");
    }

    #[test]
    fn sizes_are_si_with_three_digits() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(100), "100B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn binary_sizes_for_stats() {
        assert_eq!(binary_size(1024 * 1024 * 3 / 2), "1.5MiB");
        assert_eq!(binary_size(2_087_354_368), "1.944GiB");
        assert_eq!(binary_size(512), "512B");
    }

    #[test]
    fn durations_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(3)), "3 seconds");
        assert_eq!(human_duration(s(61)), "About a minute");
        assert_eq!(human_duration(s(150)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3 * 3600)), "3 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(s(100 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
        assert_eq!(ago(1000, 1120), "2 minutes ago");
        assert_eq!(ago(0, 1120), "");
    }

    #[test]
    fn timestamps() {
        assert_eq!(created_at(86400), "1970-01-02 00:00:00 +0000 UTC");
        assert_eq!(
            rfc3339_nanos(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
    }
}
