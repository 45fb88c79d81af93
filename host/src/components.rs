//! The components a run is served by: the built-in defaults, or files given on the command
//! line. Loading always goes through the sandbox's full checks, built-ins included.

use std::path::Path;

use anyhow::Context;

use crate::sandbox::{defaults, LoadedComponent, Sandbox, World};

/// The mapper and matcher new runs get.
#[derive(Clone)]
pub struct ActiveComponents {
    pub mapper: LoadedComponent,
    pub matcher: LoadedComponent,
}

impl ActiveComponents {
    /// The built-in components, each replaced by a file when one is given.
    pub fn load(sandbox: &Sandbox, mapper: Option<&Path>, matcher: Option<&Path>) -> anyhow::Result<ActiveComponents> {
        Ok(ActiveComponents {
            mapper: load_one(sandbox, World::Mapper, mapper, defaults::CLAUDE_CODE_MAPPER_NAME, defaults::CLAUDE_CODE_MAPPER)?,
            matcher: load_one(sandbox, World::Matcher, matcher, defaults::SKILL_RULES_MATCHER_NAME, defaults::SKILL_RULES_MATCHER)?,
        })
    }
}

fn load_one(sandbox: &Sandbox, world: World, file: Option<&Path>, builtin_name: &str, builtin: &[u8]) -> anyhow::Result<LoadedComponent> {
    let loaded = match file {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read component file `{}`", path.display()))?;
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "component".into());
            sandbox.load(&name, &bytes)?
        }
        None => sandbox.load(builtin_name, builtin).context("the built-in component does not load (a build defect)")?,
    };
    anyhow::ensure!(
        loaded.world() == world,
        "component `{}` implements `{}`, but a {} is needed here (`{}`)",
        loaded.info.label(),
        loaded.world().wit_name(),
        match world { World::Mapper => "mapper", World::Matcher => "matcher" },
        world.wit_name()
    );
    Ok(loaded)
}
