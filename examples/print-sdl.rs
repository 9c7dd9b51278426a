//! Writes each subgraph's Federation v2 SDL to `<dir>/<name>.graphql`, the
//! same text the subgraph answers to `_service { sdl }`, without starting a
//! service, a database or a broker.
//!
//! `scripts/check-composition` runs it and composes the files with an
//! independent tool:
//!
//! ```sh
//! cargo run --example print-sdl -- <dir>
//! ```
//!
//! The names are the ones the gateway gives the subgraphs in the supergraph.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args_os().skip(1);
    let (Some(dir), None) = (arguments.next(), arguments.next()) else {
        anyhow::bail!("usage: cargo run --example print-sdl -- <dir>");
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let subgraphs = [
        ("tenant", tenant_subgraph::schema::sdl()),
        ("fact", fact_subgraph::schema::sdl()),
        ("org", org_subgraph::schema::sdl()),
        ("todo", todo_subgraph::schema::sdl()),
    ];
    for (name, sdl) in subgraphs {
        let path = dir.join(format!("{name}.graphql"));
        std::fs::write(&path, sdl).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
