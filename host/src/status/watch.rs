//! `orgx-peer status --watch`: the snapshot asked for again every interval and redrawn in
//! place, until Ctrl-C (or SIGTERM).
//!
//! On a terminal each frame homes the cursor and rewrites the screen line by line, clearing
//! what the last frame left (`ESC[K` per line, `ESC[J` after), instead of clearing the
//! screen first: there is no blank flash between frames. Lines are cut to the terminal's
//! width, because a wrapped line would push the frame down and scroll it. When stdout is
//! not a terminal (a pipe, a log file) nothing but plain text is written: one block per
//! interval under a time line, with no escape sequences.
//!
//! A daemon that is not running (yet, or any more) is shown as such and asked again: a
//! watch outlives a restart of the peer it watches.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Clear the screen once, at the start.
const CLEAR: &str = "\x1b[2J";
const HOME: &str = "\x1b[H";
const CLEAR_LINE_END: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

/// Redraw every `interval` until interrupted.
pub async fn run(data_dir: &Path, interval: Duration, out: &mut impl Write, terminal: bool) -> std::io::Result<()> {
    let stop = stop_signal();
    tokio::pin!(stop);
    if terminal {
        write!(out, "{HIDE_CURSOR}{CLEAR}")?;
    }
    let result = async {
        loop {
            let body = match super::query(data_dir).await {
                Ok(snapshot) => super::render(&snapshot),
                Err(e) => format!("{e}\n(asking again every {})\n", super::render::duration(interval.as_millis() as u64)),
            };
            let title = format!(
                "orgx-peer status --watch  {}  every {}  Ctrl-C to stop",
                clock(SystemTime::now()),
                super::render::duration(interval.as_millis() as u64)
            );
            let frame = if terminal { screen(&title, &body, terminal_width()) } else { format!("--- {title}\n{body}\n") };
            out.write_all(frame.as_bytes())?;
            out.flush()?;
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
    .await;
    if terminal {
        // Leave the last frame on screen, the cursor visible below it.
        writeln!(out, "{SHOW_CURSOR}")?;
        out.flush()?;
    }
    result
}

/// One terminal frame: home, each line cut to `width` and cleared to its end, the rest of
/// the screen cleared.
fn screen(title: &str, body: &str, width: Option<usize>) -> String {
    let mut frame = String::from(HOME);
    for line in std::iter::once(title).chain(std::iter::once("")).chain(body.lines()) {
        match width {
            Some(w) => frame.extend(line.chars().take(w)),
            None => frame.push_str(line),
        }
        frame.push_str(CLEAR_LINE_END);
        frame.push_str("\r\n");
    }
    frame.push_str(CLEAR_BELOW);
    frame
}

fn clock(t: SystemTime) -> String {
    // `HH:MM:SS` of the ISO time: the date is noise in a live view.
    let iso = crate::time::iso8601(t);
    iso.get(11..19).unwrap_or(&iso).to_string()
}

fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, and nothing else.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_rewrites_every_line_in_place_and_fits_the_width() {
        let frame = screen("title", "connection   connected\nrunning a very long line", Some(12));
        assert!(frame.starts_with(HOME), "{frame:?}");
        assert!(frame.ends_with(CLEAR_BELOW), "{frame:?}");
        let lines: Vec<&str> = frame.trim_start_matches(HOME).trim_end_matches(CLEAR_BELOW).split("\r\n").collect();
        assert_eq!(lines, ["title\x1b[K", "\x1b[K", "connection  \x1b[K", "running a ve\x1b[K", ""]);
        assert!(!frame.contains(CLEAR), "no full clear per frame: it would flash");
    }

    #[test]
    fn the_clock_is_the_time_of_day() {
        assert_eq!(clock(SystemTime::UNIX_EPOCH + Duration::from_secs(3_723)), "01:02:03");
    }
}
