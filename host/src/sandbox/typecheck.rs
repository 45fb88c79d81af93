//! The `link` stage's type check: every function of a component's world export must have
//! exactly the types the host's WIT bindings call it with — checked on the compiled
//! component, before anything is instantiated.
//!
//! Why here and not at instantiation: the generated `*Pre::new` only looks exports up by
//! name; wasmtime compares the types when an instance hands out its typed functions. A
//! component with the right names and other types would then be refused only after its
//! instantiation ran, and reported as a trap. Checking here refuses it as a `link` failure
//! with the function named, and no code of it runs.
//!
//! The parameter and result types below are the ones the generated bindings use for each
//! call (`bindings/`), so they follow the WIT: a WIT change that is not mirrored here makes
//! every built-in component fail this check, which every test run notices at once.
//! `ComponentFunc::typecheck` and `InstancePre::instance_type` are public but hidden in
//! wasmtime's docs (they back its generated code); wasmtime is pinned, and the tests in
//! `tests/components.rs` (`stage_link`) and `tests/sandbox.rs` hold this to account.

use wasmtime::component::types::{ComponentInstance, ComponentItem};
use wasmtime::component::{ComponentNamedList, InstancePre, Lift, Lower};

use super::instance::GuestState;
use super::wit::{WitVersion, World};

/// Why a world export does not have what the host calls; names the interface and function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("`{interface}` is not an interface instance")]
    NotAnInterface { interface: String },
    /// `reason` is wasmtime's account of the difference (an `anyhow` chain, so text).
    #[error("`{interface}#{func}` does not have the type the WIT gives it: {reason}")]
    WrongType { interface: String, func: String, reason: String },
    #[error("`{interface}#{func}` is not a function")]
    NotAFunction { interface: String, func: String },
    #[error("`{interface}` has no function `{func}`")]
    NoFunction { interface: String, func: String },
}

/// The one table of host calls, instantiated for each version's generated types: a new
/// version is one more line in `check_exports`, not another copy of the signatures.
macro_rules! check_world {
    ($engine:expr, $pre:expr, $world:expr, $version:expr, $v:ident, $t:path) => {{
        use super::bindings::$v::matcher::exports::orgx::peer::matcher as m;
        use $t as t;
        let name = $world.export_name($version);
        let f = Export::find($engine, $pre, &name)?;
        match $world {
            World::Mapper => {
                f.check::<(&t::RunContext,), ()>("begin")?;
                f.check::<(&[u8],), (Vec<t::Event>,)>("map-line")?;
                f.check::<(&t::EndReason, Option<&str>), (t::Terminal,)>("end")
            }
            // Since 0.3.0 a matcher compiles its rules in `prepare`, once per rules version.
            World::Matcher if $version.matcher_prepares() => {
                f.check::<(&[m::Rule],), (Vec<m::RuleWarning>,)>("prepare")?;
                f.check::<(&str,), ()>("begin")?;
                f.check::<(&t::MatchSubject, &str), (Vec<m::Deviation>,)>("check")
            }
            World::Matcher => {
                f.check::<(&str, &[m::Rule]), (Vec<m::RuleWarning>,)>("begin")?;
                f.check::<(&t::MatchSubject, &str), (Vec<m::Deviation>,)>("check")
            }
        }
    }};
}

/// Check every function the host calls on `world`'s export; the error names the function.
pub fn check_exports(
    engine: &wasmtime::Engine,
    pre: &InstancePre<GuestState>,
    world: World,
    version: WitVersion,
) -> Result<(), ExportError> {
    match version {
        WitVersion::V0_1_0 => check_world!(engine, pre, world, version, v0_1_0, super::bindings::v0_1_0::mapper::orgx::peer::types),
        WitVersion::V0_2_0 => check_world!(engine, pre, world, version, v0_2_0, super::bindings::types),
        WitVersion::V0_3_0 => check_world!(engine, pre, world, version, v0_3_0, super::bindings::types),
    }
}

/// One exported interface of a component about to be linked.
struct Export<'a> {
    engine: &'a wasmtime::Engine,
    pre: &'a InstancePre<GuestState>,
    name: &'a str,
    instance: ComponentInstance,
}

impl<'a> Export<'a> {
    /// The interface the component exports as `name`.
    fn find(engine: &'a wasmtime::Engine, pre: &'a InstancePre<GuestState>, name: &'a str) -> Result<Export<'a>, ExportError> {
        match pre.component().component_type().get_export(engine, name).map(|x| x.ty) {
            Some(ComponentItem::ComponentInstance(instance)) => Ok(Export { engine, pre, name, instance }),
            _ => Err(ExportError::NotAnInterface { interface: name.to_string() }),
        }
    }

    /// `func` exists in the interface and has parameters `P` and results `R`.
    fn check<P, R>(&self, func: &str) -> Result<(), ExportError>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        let (interface, func) = (self.name.to_string(), func.to_string());
        match self.instance.get_export(self.engine, &func).map(|x| x.ty) {
            Some(ComponentItem::ComponentFunc(f)) => f.typecheck::<P, R>(&self.pre.instance_type()).map_err(|e| ExportError::WrongType {
                interface,
                func,
                reason: format!("{e:#}"),
            }),
            Some(_) => Err(ExportError::NotAFunction { interface, func }),
            None => Err(ExportError::NoFunction { interface, func }),
        }
    }
}
