//! The exposition a fresh registry gives after each kind of recording: names, labels and
//! values, read back with the strict reader the end-to-end test also uses.

use std::time::Duration;

use orgx_test_support::openmetrics;

use super::*;

#[test]
fn every_recording_shows_in_the_exposition_under_its_documented_name() {
    let m = Metrics::new();
    m.run_ended("claude_code", RunOutcome::Completed);
    m.run_ended("claude_code", RunOutcome::Completed);
    m.run_ended("codex", RunOutcome::TimedOut);
    m.run_ended("unknown", RunOutcome::Refused);
    let run = m.run_meters("mapper:claude_code");
    for _ in 0..5 {
        run.lines_read.inc();
        run.mapper_calls.inc();
    }
    run.lines_oversize.inc();
    run.matcher_calls.inc();
    m.run_meters("mapper:codex").mapper_calls.inc();
    for _ in 0..3 {
        m.frame_sent();
    }
    m.set_outbox_depth(7);
    m.set_runs_in_flight(2);
    m.commit_took(Duration::from_micros(150));
    m.commit_took(Duration::from_millis(40));
    m.reconnect(ConnectionEnd::Closed(4500));
    m.reconnect(ConnectionEnd::Dropped);
    m.reconnect(ConnectionEnd::Dropped);
    m.reconnect(ConnectionEnd::ConnectFailed);
    m.heartbeat(Beat::License, BeatOutcome::Ok);
    m.heartbeat(Beat::License, BeatOutcome::Revoked);
    m.heartbeat(Beat::Presence, BeatOutcome::Ok);
    m.heartbeat(Beat::Presence, BeatOutcome::Ok);
    m.heartbeat(Beat::Presence, BeatOutcome::Error);
    m.component_fault("hostile@sha256:0123456789ab");
    m.quarantined("hostile@sha256:0123456789ab");
    m.push_admission(None);
    m.push_admission(Some("signature"));
    m.push_admission(Some("signature"));

    let text = m.encode();
    let s = openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name: &str, labels: &[(&str, &str)]| s.value(name, labels).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(v("orgx_peer_runs_total", &[("driver", "claude_code"), ("outcome", "completed")]), 2.0);
    assert_eq!(v("orgx_peer_runs_total", &[("driver", "codex"), ("outcome", "timed_out")]), 1.0);
    assert_eq!(v("orgx_peer_runs_total", &[("driver", "unknown"), ("outcome", "refused")]), 1.0);
    assert_eq!(v("orgx_peer_lines_read_total", &[]), 5.0);
    assert_eq!(v("orgx_peer_lines_oversize_total", &[]), 1.0);
    assert_eq!(v("orgx_peer_component_calls_total", &[("slot", "mapper:claude_code")]), 5.0);
    assert_eq!(v("orgx_peer_component_calls_total", &[("slot", "mapper:codex")]), 1.0);
    assert_eq!(v("orgx_peer_component_calls_total", &[("slot", "matcher")]), 1.0);
    assert_eq!(v("orgx_peer_frames_sent_total", &[]), 3.0);
    assert_eq!(v("orgx_peer_outbox_depth", &[]), 7.0);
    assert_eq!(v("orgx_peer_runs_in_flight", &[]), 2.0);
    assert_eq!(v("orgx_peer_outbox_commit_seconds_count", &[]), 2.0);
    assert!((v("orgx_peer_outbox_commit_seconds_sum", &[]) - 0.04015).abs() < 1e-9);
    assert_eq!(v("orgx_peer_outbox_commit_seconds_bucket", &[("le", "0.0002")]), 1.0, "150 µs is in the second bucket");
    assert_eq!(v("orgx_peer_gateway_reconnects_total", &[("close_code", "4500")]), 1.0);
    assert_eq!(v("orgx_peer_gateway_reconnects_total", &[("close_code", "dropped")]), 2.0);
    assert_eq!(v("orgx_peer_gateway_reconnects_total", &[("close_code", "connect_failed")]), 1.0);
    assert_eq!(v("orgx_peer_heartbeats_total", &[("kind", "license"), ("outcome", "ok")]), 1.0);
    assert_eq!(v("orgx_peer_heartbeats_total", &[("kind", "license"), ("outcome", "revoked")]), 1.0);
    assert_eq!(v("orgx_peer_heartbeats_total", &[("kind", "presence"), ("outcome", "ok")]), 2.0);
    assert_eq!(v("orgx_peer_heartbeats_total", &[("kind", "presence"), ("outcome", "error")]), 1.0);
    assert_eq!(v("orgx_peer_component_faults_total", &[("component", "hostile@sha256:0123456789ab")]), 1.0);
    assert_eq!(v("orgx_peer_component_quarantines_total", &[("component", "hostile@sha256:0123456789ab")]), 1.0);
    assert_eq!(v("orgx_peer_component_push_admissions_total", &[("stage", "none"), ("outcome", "activated")]), 1.0);
    assert_eq!(v("orgx_peer_component_push_admissions_total", &[("stage", "signature"), ("outcome", "rejected")]), 2.0);
    for family in s.families.keys() {
        assert!(family.starts_with("orgx_peer_"), "{family}");
        assert!(s.families[family].help.as_deref().is_some_and(|h| !h.is_empty()), "{family} has help text");
    }
}

/// prometheus-client prints a labelled family only once it has a series, so a fresh
/// registry shows the unlabelled ones, at zero; the labelled ones appear with their first
/// recording (checked by value in the test above).
#[test]
fn a_fresh_registry_lists_its_unlabelled_families_at_zero() {
    let text = Metrics::new().encode();
    let s = openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: Vec<&str> = s.families.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "orgx_peer_frames_sent",
            "orgx_peer_lines_oversize",
            "orgx_peer_lines_read",
            "orgx_peer_outbox_commit_seconds",
            "orgx_peer_outbox_depth",
            "orgx_peer_runs_in_flight",
        ]
    );
    assert_eq!(s.value("orgx_peer_lines_read_total", &[]), Ok(0.0));
}
