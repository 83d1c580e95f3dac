use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[arg(long)]
    pub results: PathBuf,
}

pub fn run(_a: ReportArgs) -> Result<()> {
    Ok(())
}
