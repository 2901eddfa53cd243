//! The `brook` command line: one binary, a subcommand per role.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Brook: the Kinesis Data Streams API, self-hosted on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "brook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML, one document each, or write them to a folder.
    Crd {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print Brook's version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Version => {
            println!("brook {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = brook::api::crds();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(brook::api::crd_file_name(crd));
                std::fs::write(&path, brook::api::crd_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for crd in &crds {
                writeln!(out, "---")?;
                out.write_all(brook::api::crd_yaml(crd)?.as_bytes())?;
            }
        }
    }
    Ok(())
}
