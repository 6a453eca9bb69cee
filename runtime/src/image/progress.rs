//! Progress reporting on stderr: a bar per layer on a terminal (indicatif),
//! plain lines otherwise, or JSON lines with `--json`.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::digest::Digest;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars (stderr is a terminal).
    Bar,
    /// One line per event.
    Plain,
    /// One JSON object per event.
    Json,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Bars on a terminal, plain lines otherwise, JSON when asked.
    pub fn detect(json: bool, quiet: bool) -> Mode {
        match (json, quiet) {
            (_, true) => Mode::Quiet,
            (true, _) => Mode::Json,
            _ if std::io::stderr().is_terminal() => Mode::Bar,
            _ => Mode::Plain,
        }
    }
}

/// A progress reporter for one image operation.
pub struct Progress {
    mode: Mode,
    image: String,
    multi: Option<MultiProgress>,
    start: Instant,
}

/// Progress of one layer transfer.
pub struct LayerProgress {
    bar: Option<ProgressBar>,
}

impl LayerProgress {
    /// Adds transferred bytes.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Marks the transfer done.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

impl Progress {
    /// A reporter for `image`.
    pub fn new(mode: Mode, image: &str) -> Self {
        let multi = (mode == Mode::Bar)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            mode,
            image: image.into(),
            multi,
            start: Instant::now(),
        }
    }

    fn line(&self, event: &str, fields: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Json => {
                let mut v = serde_json::json!({"event": event, "image": self.image, "elapsed_ms": self.start.elapsed().as_millis() as u64});
                if let (Some(o), serde_json::Value::Object(f)) = (v.as_object_mut(), fields) {
                    o.extend(f);
                }
                let _ = writeln!(err, "{v}");
            }
            Mode::Plain => {
                let extra: Vec<String> = fields
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(err, "berth: {event} {} {}", self.image, extra.join(" "));
            }
            Mode::Bar => {
                if let Some(m) = &self.multi {
                    let _ = m.println(format!(
                        "{event} {}",
                        fields.get("what").and_then(|w| w.as_str()).unwrap_or("")
                    ));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// A new layer transfer of `size` bytes.
    pub fn layer(&self, digest: &Digest, size: u64) -> LayerProgress {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(digest.short().to_string());
            return LayerProgress { bar: Some(bar) };
        }
        self.line(
            "fetch",
            serde_json::json!({"layer": digest.to_string(), "size": size}),
        );
        LayerProgress { bar: None }
    }

    /// A stage (`unpack`, `squash`, `done`) with a description.
    pub fn stage(&self, event: &str, what: &str) {
        self.line(event, serde_json::json!({"what": what}));
    }
}
