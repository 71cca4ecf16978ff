//! What the subcommands share for output and control: a Markdown table for people (on stderr,
//! so stdout keeps one JSON line per result for scripts), a JSON report written to a file
//! (`--json PATH`), progress bars on long phases (drawn only on a terminal), and a stop flag
//! raised by Ctrl-C so a load run ends early and still reports what it measured.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A Markdown table: `headers`, then one line per row (cells already formatted).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    for _ in headers {
        out.push_str("---:|");
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// Writes `report` as pretty JSON to `path`, when one is given.
pub fn write_json(path: Option<&Path>, report: &Value) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(report)? + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    Ok(())
}

/// A progress bar of `len` steps named `what`, on stderr (hidden when stderr is no terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed_precise}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A flag that turns true at the first Ctrl-C (the process is not killed by it while the
/// returned flag's owner runs; a second Ctrl-C is also caught, so loops must poll the flag).
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: finishing in-flight requests, then reporting");
            s.store(true, Ordering::SeqCst);
        }
    });
    stop
}

/// Whether the flag of [`stop_on_ctrl_c`] is up.
pub fn stop_flag_set(stop: &AtomicBool) -> bool {
    stop.load(Ordering::SeqCst)
}

/// Formats a number with thousands separators and no decimals (QPS, counts).
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(
            table(&["a", "b"], &[vec!["1".into(), "2".into()]]),
            "| a | b |\n|---:|---:|\n| 1 | 2 |\n"
        );
    }
}
