//! Renderings of transfer listings for auditors: CSV (RFC 4180) and a plain-text table. Both
//! carry ids, codes, times and organisation names only, never payload values.

use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width};

use crate::ledger::TransferRecord;

const COLUMNS: [&str; 11] = [
    "transfer_id",
    "created_at",
    "agreement_id",
    "message_type",
    "sender_system",
    "user_sub",
    "recipient",
    "status",
    "reason_code",
    "ledger_seq",
    "legal_bases",
];

fn cells(r: &TransferRecord) -> [String; 11] {
    [
        r.transfer_id.to_string(),
        r.created_at.to_string(),
        r.agreement_id.clone(),
        r.message_type.clone().unwrap_or_default(),
        r.sender_system.clone(),
        r.user_sub.clone().unwrap_or_default(),
        r.recipient.clone().unwrap_or_default(),
        r.status.as_str().to_owned(),
        r.reason_code.clone().unwrap_or_default(),
        r.ledger_seq.to_string(),
        r.legal_bases.join(" "),
    ]
}

/// A spreadsheet would run a cell starting `=`, `+`, `-` or `@` as a formula: prefix a quote.
fn neutralise(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// RFC 4180: CRLF after every record, a field quoted only when it holds a comma, a quote or a
/// line break, quotes doubled.
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

/// The bytes a CSV writer into memory wrote. Writing into a `Vec` cannot fail (the csv crate's
/// only errors are its writer's) and every field is a `String`, so the bytes are UTF-8.
fn csv_text(w: csv::Writer<Vec<u8>>) -> String {
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

pub fn csv(rows: &[TransferRecord]) -> String {
    let mut w = csv_writer();
    let _ = w.write_record(COLUMNS);
    for r in rows {
        let _ = w.write_record(cells(r).iter().map(|c| neutralise(c).into_owned()));
    }
    csv_text(w)
}

/// A borderless table for the command line: each column but the last at least `width` wide (as
/// `{:<width$}` pads) and followed by `gap` spaces; wider content widens its column. Print it
/// with [`lines`].
pub fn plain_table(columns: &[(&str, u16)], gap: u16) -> Table {
    let mut table = Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns.iter().map(|(heading, _)| *heading));
    let last = columns.len().saturating_sub(1);
    for (i, (_, width)) in columns.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            if i == last {
                column.set_padding((0, 0));
            } else {
                column
                    .set_padding((0, gap))
                    .set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(width + gap)));
            }
        }
    }
    table
}

/// The table's lines, header first, then one a row where no cell holds a line break; trailing
/// spaces trimmed.
pub fn lines(table: &Table) -> impl Iterator<Item = String> {
    table.lines().map(|l| l.trim_end().to_owned())
}

pub fn table(rows: &[TransferRecord]) -> String {
    let mut table = plain_table(
        &[
            ("TRANSFER", 36),
            ("CREATED", 27),
            ("STATUS", 16),
            ("REASON", 20),
            ("SEQ", 8),
            ("MESSAGE TYPE", 0),
        ],
        2,
    );
    for r in rows {
        let [id, created, _, message_type, _, _, _, status, reason, seq, _] = cells(r);
        table.add_row([id, created, status, reason, seq, message_type]);
    }
    lines(&table).map(|l| l + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One field as the CSV export writes it (beside a second, as in a row of the export).
    fn csv_field(s: &str) -> String {
        let mut w = csv_writer();
        w.write_record([neutralise(s).as_ref(), "x"]).unwrap();
        csv_text(w).strip_suffix(",x\r\n").unwrap().to_owned()
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("Riverside, Medical"), "\"Riverside, Medical\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(x)"), "'=HYPERLINK(x)");
        assert_eq!(csv_field("plain"), "plain");
    }

    fn record(sender: &str, reason: Option<&str>) -> TransferRecord {
        let at: jiff::Timestamp = "2026-06-01T10:00:00.123456Z".parse().unwrap();
        TransferRecord {
            transfer_id: uuid::Uuid::nil(),
            agreement_id: "nvtt-gp-update".into(),
            message_type: Some("gp_update".into()),
            sender_system: sender.into(),
            recipient: Some("Riverside, Medical".into()),
            status: crate::ledger::TransferStatus::Refused,
            reason_code: reason.map(Into::into),
            created_at: at,
            updated_at: at,
            ledger_seq: 7,
            user_sub: None,
            review_due: None,
            reviewed_at: None,
            subject_informed_due: None,
            subject_informed_at: None,
            legal_bases: Vec::new(),
        }
    }

    #[test]
    fn the_export_is_rfc_4180_with_formulas_neutralised() {
        let text = csv(&[record("=cmd|' /C calc'!A0", Some("schema_violation"))]);
        assert_eq!(
            text,
            "transfer_id,created_at,agreement_id,message_type,sender_system,user_sub,recipient,status,reason_code,\
             ledger_seq,legal_bases\r\n00000000-0000-0000-0000-000000000000,2026-06-01T10:00:00.123456Z,nvtt-gp-update,\
             gp_update,'=cmd|' /C calc'!A0,,\"Riverside, Medical\",refused,schema_violation,7,\r\n"
        );
    }

    #[test]
    fn the_table_keeps_the_columns_it_had_when_written_by_hand() {
        let by_hand = |c: [&str; 6]| {
            format!(
                "{:<36}  {:<27}  {:<16}  {:<20}  {:<8}  {}",
                c[0], c[1], c[2], c[3], c[4], c[5]
            )
            .trim_end()
            .to_owned()
                + "\n"
        };
        let rows = [
            record("case-system", Some("schema_violation")),
            record("case-system", None),
        ];
        let expected = by_hand(["TRANSFER", "CREATED", "STATUS", "REASON", "SEQ", "MESSAGE TYPE"])
            + &by_hand([
                "00000000-0000-0000-0000-000000000000",
                "2026-06-01T10:00:00.123456Z",
                "refused",
                "schema_violation",
                "7",
                "gp_update",
            ])
            + &by_hand([
                "00000000-0000-0000-0000-000000000000",
                "2026-06-01T10:00:00.123456Z",
                "refused",
                "",
                "7",
                "gp_update",
            ]);
        assert_eq!(table(&rows), expected);
        // A value wider than its column widens the column instead of pushing the row out of line.
        let long = "a_reason_code_longer_than_twenty";
        let text = table(&[record("case-system", Some(long))]);
        let (header, row) = text.split_once('\n').unwrap();
        assert_eq!(header.find("SEQ"), row.find("  7  ").map(|i| i + 2));
    }
}
