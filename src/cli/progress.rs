//! Renders engine events: indicatif bars on a terminal, plain lines elsewhere.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, EventSink};

pub struct Progress {
    bars: Option<MultiProgress>,
    active: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Progress {
    /// Bars when stderr is a terminal; plain lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            bars,
            active: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    /// Prints a line without tearing the bars.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

impl EventSink for Progress {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        match event {
            Event::FolderStarted {
                folder,
                messages,
                bytes,
            } => match &self.bars {
                Some(m) => {
                    let bar = m.add(ProgressBar::new(bytes));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>20} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(folder.to_string());
                    bar.set_message(format!("0/{messages} msgs"));
                    active.insert(folder.to_string(), bar);
                }
                None => eprintln!(
                    "{folder}: placing {messages} message(s), {}",
                    human_bytes(bytes)
                ),
            },
            Event::Placed {
                folder,
                messages,
                bytes,
            } => {
                if let Some(bar) = active.get(&folder.to_string()) {
                    bar.inc(bytes);
                    let done = bar
                        .message()
                        .split('/')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                        + messages;
                    let total = bar
                        .message()
                        .split('/')
                        .nth(1)
                        .map(str::to_string)
                        .unwrap_or_default();
                    bar.set_message(format!("{done}/{total}"));
                }
            }
            Event::FolderFinished { folder } => {
                if let Some(bar) = active.remove(&folder.to_string()) {
                    bar.finish_and_clear();
                }
            }
            Event::Notice(text) => {
                drop(active);
                self.line(&format!("note: {text}"));
            }
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
