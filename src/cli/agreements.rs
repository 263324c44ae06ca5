//! `agreements`: every agreement's state, dates and recipient.

use std::path::Path;
use std::process::ExitCode;

use super::{Format, load, load_agreements};
use crate::app::config::Overrides;

pub(super) fn agreements(path: &Path, format: Format) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let agreements = load_agreements(&config)?;
    let today = crate::platform::clock::Clock::System.today();
    let views: Vec<_> = agreements.iter().map(|a| a.view(today)).collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(|e| e.to_string())?),
        Format::Table => {
            let mut table = crate::audit::report::plain_table(
                &[
                    ("ID", 22),
                    ("VERSION", 8),
                    ("STATE", 28),
                    ("REVIEW BY", 11),
                    ("EXPIRES", 11),
                    ("RECIPIENT", 0),
                ],
                1,
            );
            for v in &views {
                let mut row = comfy_table::Row::from([
                    v.id.to_string(),
                    v.version.to_string(),
                    v.state.to_string(),
                    v.review_by.to_string(),
                    v.expires.to_string(),
                    v.recipient.organisation.to_string(),
                ]);
                // One line a row, so that each agreement's warnings can follow its line.
                row.max_height(1);
                table.add_row(row);
            }
            let mut lines = crate::audit::report::lines(&table);
            if let Some(header) = lines.next() {
                println!("{header}");
            }
            for (v, line) in views.iter().zip(lines) {
                println!("{line}");
                for w in &v.warnings {
                    println!("  warning: {w}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
