//! Per-layer progress for `pull` and `push`: a bar per layer on a
//! terminal (short digest, phase, bar, sizes, speed), one line per finished
//! layer otherwise, nothing when quiet.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use berth_proto::berth::v1::{layer_progress::Phase, LayerProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::format::{short_id, units::human_size};

/// Which operation the bars show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `pull`.
    Pull,
    /// `push`.
    Push,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars (the stream is a terminal).
    Bars,
    /// One line per layer when it is done.
    Lines,
    /// Nothing.
    Quiet,
}

/// Picks the mode: bars on a terminal, lines otherwise, nothing with `-q`.
pub fn mode_for(is_tty: bool, quiet: bool) -> Mode {
    match (quiet, is_tty) {
        (true, _) => Mode::Quiet,
        (false, true) => Mode::Bars,
        (false, false) => Mode::Lines,
    }
}

/// The words docker shows for a phase.
pub fn phase_text(op: Op, phase: Phase) -> &'static str {
    match (op, phase) {
        (_, Phase::Waiting) => "Waiting",
        (_, Phase::Downloading) => "Downloading",
        (_, Phase::Extracting) => "Extracting",
        (Op::Pull, Phase::Complete) => "Pull complete",
        (Op::Push, Phase::Complete) => "Pushed",
        (Op::Pull, Phase::Exists) => "Already exists",
        (Op::Push, Phase::Exists) => "Layer already exists",
        (_, Phase::Uploading) => "Pushing",
    }
}

fn is_final(p: Phase) -> bool {
    matches!(p, Phase::Complete | Phase::Exists)
}

/// Live progress of one pull or push.
pub struct Progress {
    op: Op,
    mode: Mode,
    color: bool,
    to_stderr: bool,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    done: HashMap<String, Phase>,
}

impl Progress {
    /// Progress drawn on stdout or stderr.
    pub fn new(op: Op, mode: Mode, color: bool, to_stderr: bool) -> Progress {
        let target = match (mode, to_stderr) {
            (Mode::Bars, true) => ProgressDrawTarget::stderr(),
            (Mode::Bars, false) => ProgressDrawTarget::stdout(),
            _ => ProgressDrawTarget::hidden(),
        };
        Progress {
            op,
            mode,
            color,
            to_stderr,
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            done: HashMap::new(),
        }
    }

    fn line(&self, text: &str) {
        let r = if self.to_stderr {
            writeln!(std::io::stderr(), "{text}")
        } else {
            writeln!(std::io::stdout(), "{text}")
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "writing progress");
        }
    }

    fn style(&self, phase: Phase) -> ProgressStyle {
        let moving = matches!(
            phase,
            Phase::Downloading | Phase::Uploading | Phase::Extracting
        );
        let tpl = match (moving, self.color) {
            (true, true) => "{prefix}: {msg:<11} [{bar:40.cyan/blue}] {sizes} {speed}",
            (true, false) => "{prefix}: {msg:<11} [{bar:40}] {sizes} {speed}",
            (false, _) => "{prefix}: {msg}",
        };
        ProgressStyle::with_template(tpl)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
            .with_key("sizes", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(
                    w,
                    "{}/{}",
                    human_size(s.pos()),
                    human_size(s.len().unwrap_or(0))
                );
            })
            .with_key("speed", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", human_size(s.per_sec() as u64));
            })
    }

    /// Every layer of the image, as the manifest lists them.
    pub fn layers(&mut self, layers: &[LayerProgress]) {
        for l in layers {
            self.update(l);
        }
    }

    /// One layer's new state.
    pub fn update(&mut self, l: &LayerProgress) {
        let phase = Phase::try_from(l.phase).unwrap_or(Phase::Waiting);
        let id = short_id(&l.digest);
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                if let Some(line) = done_line(self.op, l) {
                    if self.done.insert(l.digest.clone(), phase).is_none() {
                        self.line(&line);
                    }
                }
            }
            Mode::Bars => {
                let bar = match self.bars.get(&l.digest) {
                    Some(b) => b.clone(),
                    None => {
                        let b = self.multi.add(ProgressBar::new(l.total));
                        b.set_prefix(id);
                        self.bars.insert(l.digest.clone(), b.clone());
                        b
                    }
                };
                bar.set_style(self.style(phase));
                if l.total > 0 {
                    bar.set_length(l.total);
                }
                bar.set_position(l.current);
                bar.set_message(phase_text(self.op, phase));
                if is_final(phase) {
                    bar.finish();
                }
            }
        }
    }

    /// Ends the display (bars stay on screen, the cursor below them).
    pub fn finish(&mut self) {
        let drawn = !self.bars.is_empty();
        for (_, b) in self.bars.drain() {
            if !b.is_finished() {
                b.abandon();
            }
        }
        // indicatif leaves the cursor at the end of the bottom bar.
        if self.mode == Mode::Bars && drawn {
            self.line("");
        }
    }

    /// Whether every layer was already there (nothing moved).
    pub fn all_existed(&self, layers: &[LayerProgress]) -> bool {
        !layers.is_empty()
            && layers
                .iter()
                .all(|l| Phase::try_from(l.phase).ok() == Some(Phase::Exists))
    }
}

/// One finished-layer line as printed without a terminal.
pub fn done_line(op: Op, l: &LayerProgress) -> Option<String> {
    let phase = Phase::try_from(l.phase).ok()?;
    let mut s = String::new();
    if is_final(phase) {
        let _ = write!(s, "{}: {}", short_id(&l.digest), phase_text(op, phase));
        Some(s)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(d: &str, phase: Phase) -> LayerProgress {
        LayerProgress {
            digest: d.into(),
            total: 10,
            current: 10,
            phase: phase as i32,
        }
    }

    #[test]
    fn modes() {
        assert_eq!(mode_for(true, false), Mode::Bars);
        assert_eq!(mode_for(false, false), Mode::Lines);
        assert_eq!(mode_for(true, true), Mode::Quiet);
    }

    #[test]
    fn lines_only_for_finished_layers() {
        let l = layer("sha256:0123456789abcdef", Phase::Complete);
        assert_eq!(
            done_line(Op::Pull, &l).as_deref(),
            Some("0123456789ab: Pull complete")
        );
        assert_eq!(
            done_line(Op::Push, &layer("sha256:0123456789abcdef", Phase::Exists)).as_deref(),
            Some("0123456789ab: Layer already exists")
        );
        assert_eq!(
            done_line(Op::Pull, &layer("sha256:01", Phase::Downloading)),
            None
        );
    }

    #[test]
    fn all_existed() {
        let p = Progress::new(Op::Pull, Mode::Quiet, false, true);
        assert!(p.all_existed(&[layer("a", Phase::Exists)]));
        assert!(!p.all_existed(&[layer("a", Phase::Exists), layer("b", Phase::Complete)]));
        assert!(!p.all_existed(&[]));
    }
}
