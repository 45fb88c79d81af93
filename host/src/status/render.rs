//! A snapshot as text: what `status` prints and what `status --watch` redraws. It reads the
//! snapshot as JSON, not as the daemon's types, because a `status` binary may be newer or
//! older than the daemon that answered: a field it does not know is skipped, one it misses
//! prints `-`.

use serde_json::Value;

/// A short human rendering of a snapshot.
pub fn render(v: &Value) -> String {
    let s = |p: &str| {
        v.pointer(p)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    out.push_str(&format!("orgx-peer {}  workspace {}\n", s("/version"), s("/workspace_id")));
    let protocol = v["protocol"].as_str().map(|p| format!("  protocol {p}")).unwrap_or_default();
    out.push_str(&format!("connection   {}{protocol}\n", s("/link")));
    runs(v, &mut out);
    out.push_str(&format!("outbox       {} message(s) waiting{}\n", s("/queue_depth"), oldest_owed(&v["oldest_owed"])));
    out.push_str(&format!("rules        {}\n", s("/rules")));
    if let Some(Value::Array(cs)) = v.get("components") {
        for c in cs {
            let key = c["key_id"].as_str().map(|k| format!(" signed by {k}")).unwrap_or_default();
            out.push_str(&format!(
                "component    {} {} v{} ({}{key}) sha256:{}\n",
                c["slot"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["version"].as_u64().unwrap_or(0),
                c["origin"].as_str().unwrap_or("?"),
                c["sha256"].as_str().unwrap_or("?")
            ));
        }
    }
    out.push_str(&format!(
        "components dir {}{}\n",
        s("/components_dir"),
        if v["dev_unsigned_local"] == Value::Bool(true) { "  (DEV MODE: unsigned accepted)" } else { "" }
    ));
    out.push_str(&format!("trusted keys {}  quarantined {}\n", s("/trusted_keys"), s("/quarantined")));
    out.push_str(&format!("license      last ok {}  degraded {}\n", s("/heartbeats/last_license_ok"), s("/heartbeats/degraded")));
    out.push_str(&format!("presence     last ok {}\n", s("/heartbeats/last_presence_ok")));
    if let Some(Value::Object(drivers)) = v.get("drivers") {
        let enabled: Vec<&str> = v["drivers_enabled"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for (id, d) in drivers {
            out.push_str(&format!(
                "driver       {id} {} installed {} version {} logged in {}\n",
                if enabled.contains(&id.as_str()) { "enabled" } else { "off" },
                d["installed"],
                d["version"].as_str().unwrap_or("-"),
                d["logged_in"]
            ));
        }
    }
    out
}

/// The runs line, then one line per run when the daemon reports them in detail.
fn runs(v: &Value, out: &mut String) {
    let count = v["runs_in_flight_count"].as_u64().map_or_else(|| "-".into(), |n| n.to_string());
    match v["runs"].as_array() {
        Some(runs) => {
            out.push_str(&format!("runs         {count} in flight\n"));
            for r in runs {
                out.push_str(&format!(
                    "  {}  {}  {}  {} line(s)  last step: {}\n",
                    r["run_id"].as_str().unwrap_or("?"),
                    r["driver"].as_str().unwrap_or("?"),
                    r["elapsed_ms"].as_u64().map_or_else(|| "-".into(), duration),
                    r["lines"].as_u64().unwrap_or(0),
                    r["last_step"].as_str().unwrap_or("-"),
                ));
            }
        }
        // A daemon from before per-run detail: the ids only.
        None => out.push_str(&format!("runs         {count} in flight {}\n", v["runs_in_flight"])),
    }
}

fn oldest_owed(o: &Value) -> String {
    if o["before_start"] == Value::Bool(true) {
        ", the oldest stored before this start".into()
    } else if let Some(ms) = o["age_ms"].as_u64() {
        format!(", the oldest for {}", duration(ms))
    } else {
        String::new()
    }
}

/// `950 ms`, `12.3 s`, `4m 05s`, `2h 03m`: precise when short, readable when long.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms} ms"),
        1..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_well_at_every_scale() {
        let cases = [(0, "0 ms"), (950, "950 ms"), (1000, "1.0 s"), (12_345, "12.3 s"), (245_000, "4m 05s"), (7_380_000, "2h 03m")];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn runs_and_the_oldest_owed_message_are_shown() {
        let v = json!({
            "version": "0.1.0", "link": "connected", "protocol": "orgx.v1",
            "runs_in_flight_count": 1,
            "runs": [{"run_id": "run-1", "driver": "claude_code", "elapsed_ms": 65_000, "lines": 12, "last_step": "Write a.txt"}],
            "queue_depth": 3, "oldest_owed": {"since": "2026-12-02T20:00:00Z", "age_ms": 2_100},
        });
        let text = render(&v);
        assert!(text.contains("connection   connected  protocol orgx.v1\n"), "{text}");
        assert!(text.contains("runs         1 in flight\n  run-1  claude_code  1m 05s  12 line(s)  last step: Write a.txt\n"), "{text}");
        assert!(text.contains("outbox       3 message(s) waiting, the oldest for 2.1 s\n"), "{text}");
    }

    #[test]
    fn an_older_daemon_or_a_missing_field_still_renders() {
        let text = render(&json!({"runs_in_flight": ["a"], "runs_in_flight_count": 1, "oldest_owed": {"before_start": true}}));
        assert!(text.contains("runs         1 in flight [\"a\"]\n"), "{text}");
        assert!(text.contains("the oldest stored before this start"), "{text}");
        let empty = render(&json!({}));
        assert!(empty.contains("connection   -\n") && empty.contains("outbox       - message(s) waiting\n"), "{empty}");
    }
}
