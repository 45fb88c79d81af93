//! Skill rules as the server serves them (`GET /api/v1/plan-skills`), flattened for a matcher.
//!
//! Only the shape lives here: which rule matches what is the matcher component's business.
//! Parsing is strict about the fields a rule needs and lenient about anything else, so one
//! bad rule (or a field added by a newer server) never costs the others.

use serde::Deserialize;

/// One rule, flattened with its skill id, ready for the matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub skill_id: String,
    pub pattern: String,
    pub on: RuleOn,
    pub dedupe_fingerprint: String,
    pub evidence_kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOn {
    FileEdit,
    ToolCall,
}

/// The rules of one plan-skills response, plus what was skipped and why.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct PlanSkills {
    skills: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawRule {
    pattern: String,
    on: String,
    #[serde(default)]
    dedupe_fingerprint: Option<String>,
    #[serde(default)]
    evidence_kind: Option<String>,
}

impl RuleSet {
    /// Parse a plan-skills response body. Fails only when the body is not the expected
    /// envelope (`{"skills":[…]}`); individual bad skills or rules are skipped and listed.
    pub fn from_plan_skills(body: &[u8]) -> Result<RuleSet, RulesError> {
        // serde's derived structs also read a JSON array as their fields in order: `[[…]]`
        // would pass for `{"skills": […]}` (found by the `plan_skills` fuzz target, P1).
        if !body.trim_ascii_start().starts_with(b"{") {
            return Err(RulesError("it is not a JSON object".into()));
        }
        let doc: PlanSkills = serde_json::from_slice(body).map_err(|e| RulesError(e.to_string()))?;
        let mut set = RuleSet::default();
        for (si, skill) in doc.skills.iter().enumerate() {
            let Some(id) = skill.get("id").and_then(|v| v.as_str()) else {
                set.skipped.push(format!("skill #{si}: no string `id`"));
                continue;
            };
            let rules = skill.get("rules").and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or(&[]);
            for (ri, raw) in rules.iter().enumerate() {
                if !raw.is_object() {
                    set.skipped.push(format!("skill `{id}` rule #{ri}: not an object"));
                    continue;
                }
                match serde_json::from_value::<RawRule>(raw.clone()) {
                    Ok(r) => {
                        let on = match r.on.as_str() {
                            "file_edit" => RuleOn::FileEdit,
                            "tool_call" => RuleOn::ToolCall,
                            other => {
                                set.skipped.push(format!("skill `{id}` rule #{ri}: unknown `on` value `{other}`"));
                                continue;
                            }
                        };
                        set.rules.push(Rule {
                            skill_id: id.to_string(),
                            pattern: r.pattern,
                            on,
                            dedupe_fingerprint: r.dedupe_fingerprint.unwrap_or_default(),
                            evidence_kind: r.evidence_kind.unwrap_or_default(),
                        });
                    }
                    Err(e) => set.skipped.push(format!("skill `{id}` rule #{ri}: {e}")),
                }
            }
        }
        Ok(set)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("plan-skills body is not `{{\"skills\": [...]}}`: {0}")]
pub struct RulesError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_and_skips_bad_rules() {
        let body = br#"{"skills":[
            {"id":"s1","rules":[
                {"pattern":"rm -rf","on":"tool_call","dedupe_fingerprint":"f1","evidence_kind":"bash"},
                {"pattern":"x","on":"chat","dedupe_fingerprint":"f2","evidence_kind":"k"},
                {"on":"file_edit"}
            ]},
            {"rules":[]},
            {"id":"s3","rules":[["\\.env$","file_edit"]]},
            {"id":"s2","rules":[{"pattern":"\\.env$","on":"file_edit","dedupe_fingerprint":"f","evidence_kind":"path","extra":1}]}
        ],"version":3}"#;
        let set = RuleSet::from_plan_skills(body).unwrap();
        assert_eq!(set.rules.len(), 2);
        assert_eq!(set.rules[0].skill_id, "s1");
        assert_eq!(set.rules[1].on, RuleOn::FileEdit);
        assert_eq!(set.skipped.len(), 4, "{:?}", set.skipped);
        assert!(set.skipped[3].contains("skill `s3` rule #0: not an object"), "{:?}", set.skipped);
    }

    #[test]
    fn rejects_a_body_that_is_not_the_envelope() {
        for body in [
            &b"[]"[..],
            b"[[]]",
            b" [[{\"id\":\"s\",\"rules\":[]}]]",
            b"not json",
            b"{\"skills\":3}",
            b"{\"skills\":[],\"skills\":[]}",
            b"",
        ] {
            assert!(RuleSet::from_plan_skills(body).is_err());
        }
    }
}
