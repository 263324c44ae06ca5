//! `agreements`: every agreement's state, dates and recipient.

use std::path::Path;
use std::process::ExitCode;

use super::{Format, load};
use crate::app::catalogue::load_agreements;
use crate::app::config::Overrides;

pub(super) fn agreements(path: &Path, format: Format) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let (agreements, _) = load_agreements(&config).map_err(|p| {
        format!(
            "{} problem(s); run `isa-gateway check`:\n{}",
            p.len(),
            p.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        )
    })?;
    let today = crate::platform::clock::Clock::System.today();
    let views: Vec<_> = agreements.iter().map(|a| a.view(today)).collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(|e| e.to_string())?),
        Format::Table => {
            println!(
                "{:<22} {:<8} {:<28} {:<11} {:<11} RECIPIENT",
                "ID", "VERSION", "STATE", "REVIEW BY", "EXPIRES"
            );
            for v in &views {
                println!(
                    "{:<22} {:<8} {:<28} {:<11} {:<11} {}",
                    v.id, v.version, v.state, v.review_by, v.expires, v.recipient.organisation
                );
                for w in &v.warnings {
                    println!("  warning: {w}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
