//! `saekit mix`: run a recipe (a terminal progress line, the mixed dataset written into the workspace),
//! print the recipe schema, save and list a recipe's versions, export one, and show a mix's report.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use saekit::Result;
use saekit::catalog::Workspace;
use saekit::display::Render;
use saekit::jobs::TerminalBar;
use saekit::mix::{MixRecipe, MixRun};

#[derive(Subcommand)]
pub enum MixCommand {
    /// Run a recipe (JSON) into a dataset of the recipe's name (or --name); saves the recipe's version
    Run {
        #[arg(value_name = "RECIPE.json")]
        recipe: PathBuf,
        /// The mixed dataset's name (default: the recipe's)
        #[arg(long)]
        name: Option<String>,
        /// Print the mix's report as one JSON object instead of its card
        #[arg(long)]
        json: bool,
    },
    /// Check a recipe and show its card, without reading any data
    Check {
        #[arg(value_name = "RECIPE.json")]
        recipe: PathBuf,
    },
    /// The JSON schema recipes follow
    Schema,
    /// Save a recipe in the workspace (a new version when it changed)
    Save {
        #[arg(value_name = "RECIPE.json")]
        recipe: PathBuf,
    },
    /// A saved recipe's versions, and what changed in each
    History { name: String },
    /// Write a saved recipe (NAME or NAME@VERSION) as JSON, to FILE or stdout
    Export {
        name: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// A mixed dataset's realised-vs-target report
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        /// Also list up to N dropped documents
        #[arg(long, value_name = "N")]
        dropped: Option<usize>,
    },
}

pub fn mix(command: MixCommand, open: impl FnOnce() -> Result<Workspace>) -> Result<()> {
    match command {
        MixCommand::Run { recipe, name, json } => {
            let recipe = MixRecipe::from_file(&recipe)?;
            let ws = open()?;
            let mut run = MixRun::new(&recipe);
            if let Some(name) = name {
                run = run.named(&name);
            }
            let job = ws.make_job(run);
            if !json {
                job.subscribe(Arc::new(TerminalBar::new()));
            }
            let mix = job.wait()?;
            if json {
                println!("{}", serde_json::to_string(&mix.report).unwrap_or_default());
            } else {
                println!("{}", mix.bundle().plain());
            }
        }
        MixCommand::Check { recipe } => println!("{}", MixRecipe::from_file(&recipe)?.bundle().plain()),
        MixCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&MixRecipe::json_schema()).unwrap_or_default())
        }
        MixCommand::Save { recipe } => {
            let saved = open()?.save_recipe(&MixRecipe::from_file(&recipe)?)?;
            println!("saved recipe {} version {} ({})", saved.name, saved.version, &saved.hash[..12]);
        }
        MixCommand::History { name } => println!("{}", open()?.recipe_history(&name)?.bundle().plain()),
        MixCommand::Export { name, out } => {
            let recipe = open()?.recipe(&name)?;
            match out {
                Some(path) => recipe.export(&path)?,
                None => println!("{}", recipe.to_json()),
            }
        }
        MixCommand::Show { name, json, dropped } => {
            let mix = open()?.mix_named(&name)?;
            if json {
                println!("{}", serde_json::to_string(&mix.report).unwrap_or_default());
            } else {
                println!("{}", mix.bundle().plain());
            }
            if let Some(n) = dropped {
                println!("\n{}", mix.dropped(None, n)?.bundle().plain());
            }
        }
    }
    Ok(())
}
