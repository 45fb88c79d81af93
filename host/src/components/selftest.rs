//! The last admission stage: run a candidate on sample input, under the production limits,
//! before any real run depends on it.
//!
//! Compiling and type-checking prove a component *can* be called; this proves its calls
//! return. A mapper replays a recorded transcript of its own driver (bundled in the binary,
//! `host/assets/selftest/`) from `begin` to `end`; a matcher loads sample rules and checks sample edits and commands. Any
//! trap or limit fails the stage. What the outputs say is not judged: a new mapper may map
//! differently, and that is the point of pushing it.

use crate::driver::Driver;
use crate::rules::RuleSet;
use crate::sandbox::{matcher_types as m, types as t, Fault, Limits, LoadedComponent, MapperInstance, MatcherInstance, World};
use crate::trust::Slot;

/// Rules in the plan-skills shape: path, content and Bash rules with lookahead.
const SAMPLE_RULES: &[u8] = include_bytes!("../../assets/selftest/rules.json");

/// Why a self-test failed: the instance could not be created, or a call faulted.
#[derive(Debug)]
pub enum SelfTestError {
    Instantiate(Fault),
    Call(Fault),
}

impl std::fmt::Display for SelfTestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelfTestError::Instantiate(fault) => write!(f, "{fault}"),
            SelfTestError::Call(fault) => write!(f, "on sample input: {fault}"),
        }
    }
}

/// Exercise `component` as its world says; a mapper replays its own driver's sample output.
pub fn run(component: &LoadedComponent, slot: Slot, limits: Limits) -> Result<(), SelfTestError> {
    match (component.world(), slot) {
        (World::Mapper, Slot::Mapper(id)) => {
            let driver = crate::driver::by_id(id).unwrap_or(crate::driver::DEFAULT_MAPPER);
            mapper(component, driver, limits)
        }
        (World::Mapper, Slot::Matcher) => mapper(component, crate::driver::DEFAULT_MAPPER, limits),
        (World::Matcher, _) => matcher(component, limits),
    }
}

fn mapper(component: &LoadedComponent, driver: &Driver, limits: Limits) -> Result<(), SelfTestError> {
    let mut instance = MapperInstance::new(component, limits).map_err(SelfTestError::Instantiate)?;
    let call = SelfTestError::Call;
    instance.begin(&crate::sandbox::convert::run_context("self-test", None, driver.id)).map_err(call)?;
    for line in driver.selftest.lines() {
        instance.map_line(line.as_bytes()).map_err(call)?;
    }
    instance.end(&t::EndReason::Exited(t::ProcessExit::Code(0)), None).map_err(call)?;
    Ok(())
}

fn matcher(component: &LoadedComponent, limits: Limits) -> Result<(), SelfTestError> {
    let mut instance = MatcherInstance::new(component, limits).map_err(SelfTestError::Instantiate)?;
    let call = SelfTestError::Call;
    // The sample rules are part of the binary and known to parse.
    let rules: Vec<m::Rule> = RuleSet::from_plan_skills(SAMPLE_RULES).map(|s| s.rules.iter().map(Into::into).collect()).unwrap_or_default();
    instance.begin("self-test", &rules).map_err(call)?;
    let subjects = [
        (t::RuleOn::FileEdit, "notes.txt\nhello from the fake model\n"),
        (t::RuleOn::FileEdit, ".env\nSECRET=1\n"),
        (t::RuleOn::ToolCall, "Bash cat notes.txt"),
        (t::RuleOn::ToolCall, "Bash git push --force origin main"),
    ];
    for (n, (on, text)) in subjects.into_iter().enumerate() {
        instance.check(&t::MatchSubject { on, text: text.into() }, &format!("toolu_selftest_{n}")).map_err(call)?;
    }
    Ok(())
}
