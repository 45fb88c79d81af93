//! `rules::RuleSet::from_plan_skills`, the loader of `GET /api/v1/plan-skills` answers, then
//! the host's conversion of every rule into the matcher's WIT record (what `begin` receives).
//! The rule compiler behind it is the matcher component's, fuzzed natively by
//! `rules_compile_and_match`.
//!
//! Input: the answer's body. Asserts: a body that is not `{"skills": [...]}` (one `skills`
//! key) is the only error; every rule kept names a skill whose `id` is a string and an `on` the matcher knows;
//! every skipped entry is explained in one line that names its skill or position; kept and
//! skipped together never exceed the rules the body holds; and the conversion keeps every
//! field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_peer::rules::{RuleOn, RuleSet};
use orgx_peer::sandbox::{matcher_types as m, types as t};
use serde_json::Value;

/// How many times the top-level object names `skills`. `Value` keeps the last of duplicate
/// keys; the loader refuses them, as ambiguous (finding P2: the oracle, not the loader).
struct SkillsKeys(usize);

impl<'de> serde::Deserialize<'de> for SkillsKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> serde::de::Visitor<'de> for Count {
            type Value = SkillsKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SkillsKeys, A::Error> {
                let mut n = 0;
                while let Some(key) = map.next_key::<String>()? {
                    n += usize::from(key == "skills");
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(SkillsKeys(n))
            }
        }
        d.deserialize_map(Count)
    }
}

fuzz_target!(|data: &[u8]| {
    let doc: Option<Value> = serde_json::from_slice(data).ok();
    let Ok(set) = RuleSet::from_plan_skills(data) else {
        let envelope_ok = doc.as_ref().and_then(|d| d.get("skills")).is_some_and(Value::is_array);
        let one_key = serde_json::from_slice::<SkillsKeys>(data).is_ok_and(|k| k.0 == 1);
        assert!(!envelope_ok || !one_key || !doc.as_ref().is_some_and(Value::is_object), "refused a `{{\"skills\": [...]}}` body");
        return;
    };
    let doc = doc.expect("an accepted body is JSON");
    let skills = doc["skills"].as_array().expect("an accepted body has a skills array");
    let ids: Vec<&str> = skills.iter().filter_map(|s| s.get("id").and_then(Value::as_str)).collect();
    let held: usize = skills.iter().map(|s| s.get("rules").and_then(Value::as_array).map_or(0, Vec::len)).sum();
    assert!(set.rules.len() <= held, "{} rules kept of {held}", set.rules.len());
    assert!(set.rules.len() + set.skipped.len() <= held + skills.len(), "more outcomes than entries");
    for r in &set.rules {
        assert!(ids.contains(&r.skill_id.as_str()), "rule of an unknown skill {:?}", r.skill_id);
        let w: m::Rule = r.into();
        assert_eq!((w.skill_id.as_str(), w.pattern.as_str()), (r.skill_id.as_str(), r.pattern.as_str()));
        assert_eq!(w.dedupe_fingerprint, r.dedupe_fingerprint);
        assert_eq!(w.evidence_kind, r.evidence_kind);
        let on = match r.on {
            RuleOn::FileEdit => t::RuleOn::FileEdit,
            RuleOn::ToolCall => t::RuleOn::ToolCall,
        };
        assert_eq!(w.on, on);
    }
    for why in &set.skipped {
        assert!(why.starts_with("skill "), "skip reason without its skill: {why:?}");
    }
});
