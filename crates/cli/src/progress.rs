//! A progress line on the terminal while a long request runs: a query over
//! a week of spans can take seconds, and a silent terminal looks hung.
//!
//! Only when standard error is a terminal, and only after half a second
//! (quick answers print nothing extra); the line is cleared before the
//! answer is printed, so piped output never carries it.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How long a request runs before the line appears.
const QUIET_FOR: Duration = Duration::from_millis(500);

/// Awaits `work`, showing `label` with the time spent on standard error
/// while it runs (see the module docs).
pub async fn while_waiting<T>(label: &str, work: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let start = Instant::now();
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut shown = false;
    loop {
        tokio::select! {
            out = &mut work => {
                if shown {
                    // Back to the line's start and erase it.
                    eprint!("\r\x1b[2K");
                }
                return out;
            }
            _ = tick.tick() => {
                let elapsed = start.elapsed();
                if elapsed >= QUIET_FOR {
                    eprint!("\r{}", line(label, elapsed));
                    shown = true;
                }
            }
        }
    }
}

/// The progress line after `elapsed`: a spinner frame, the label, seconds.
fn line(label: &str, elapsed: Duration) -> String {
    let frame = FRAMES[(elapsed.as_millis() / 100) as usize % FRAMES.len()];
    format!("{frame} {label} {:.1} s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_runs_and_for_how_long() {
        assert_eq!(
            line("running query", Duration::from_millis(1234)),
            "⠹ running query 1.2 s"
        );
        assert_eq!(line("x", Duration::from_millis(0)), "⠋ x 0.0 s");
    }

    #[tokio::test]
    async fn the_answer_comes_through_unchanged() {
        // Tests run without a terminal on standard error: nothing is drawn.
        assert_eq!(while_waiting("waiting", async { 42 }).await, 42);
    }
}
