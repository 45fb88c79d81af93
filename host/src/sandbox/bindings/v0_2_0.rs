//! `wit/v0.2.0`, served beside the newest version. Its `types` interface is the one the host
//! uses throughout (0.3.0 kept it unchanged and maps onto it); only its matcher's records,
//! which 0.3.0 declares again in its own `matcher`, convert here.

use super::matcher_types as new_m;

pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "mapper-component",
    });
}

pub mod matcher {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "matcher-component",
        // Both worlds share `orgx:peer/types`: generate it once.
        with: { "orgx:peer/types": super::mapper::orgx::peer::types },
    });
}

use matcher::exports::orgx::peer::matcher as old_m;

impl From<&new_m::Rule> for old_m::Rule {
    fn from(r: &new_m::Rule) -> old_m::Rule {
        old_m::Rule {
            skill_id: r.skill_id.clone(),
            pattern: r.pattern.clone(),
            on: r.on,
            dedupe_fingerprint: r.dedupe_fingerprint.clone(),
            evidence_kind: r.evidence_kind.clone(),
        }
    }
}

impl From<old_m::RuleWarning> for new_m::RuleWarning {
    fn from(w: old_m::RuleWarning) -> new_m::RuleWarning {
        new_m::RuleWarning { index: w.index, message: w.message }
    }
}

impl From<old_m::Deviation> for new_m::Deviation {
    fn from(d: old_m::Deviation) -> new_m::Deviation {
        new_m::Deviation {
            skill_id: d.skill_id,
            evidence_kind: d.evidence_kind,
            evidence_ref: d.evidence_ref,
            dedupe_key: d.dedupe_key,
            severity: d.severity,
        }
    }
}
