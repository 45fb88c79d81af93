//! `orgx_mapper_opencode::Mapper`: the input is a run's stdout, fed line by line, then ended.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_mapper_opencode::{Mapper, RunContext};
use orgx_peer_fuzz::{check_terminal, end_reason, lines, Policy, RunCheck};

const POLICY: Policy = Policy { reasons_one_line_redacted: true };

fuzz_target!(|data: &[u8]| {
    let mut mapper = Mapper::new(RunContext::new("r", Some("/repo".into())));
    let mut run = RunCheck::default();
    for line in lines(data) {
        let events = mapper.map_line(line);
        run.events(&events, POLICY);
    }
    let (reason, stderr_tail) = end_reason(data);
    // The host calls `end` only when no terminal came; calling it anyway must still be sound.
    let terminal = mapper.end(reason, stderr_tail);
    check_terminal(&terminal, POLICY);
    // After `end`, the mapper is done: further lines map to nothing.
    for line in lines(data).take(4) {
        assert!(mapper.map_line(line).is_empty(), "events after end");
    }
});
