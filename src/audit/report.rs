//! Renderings of transfer listings for auditors: CSV (RFC 4180) and a plain-text table. Both
//! carry ids, codes, times and organisation names only, never payload values.

use crate::ledger::TransferRecord;

const COLUMNS: [&str; 10] = [
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
];

fn cells(r: &TransferRecord) -> [String; 10] {
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
    ]
}

fn csv_field(s: &str) -> String {
    // Quote every field that needs it; neutralise spreadsheet formula injection.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn csv(rows: &[TransferRecord]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&cells(r).iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

pub fn table(rows: &[TransferRecord]) -> String {
    let mut out = format!(
        "{:<36}  {:<27}  {:<16}  {:<20}  {:<8}  {}\n",
        "TRANSFER", "CREATED", "STATUS", "REASON", "SEQ", "MESSAGE TYPE"
    );
    for r in rows {
        let c = cells(r);
        out.push_str(&format!(
            "{:<36}  {:<27}  {:<16}  {:<20}  {:<8}  {}\n",
            c[0], c[1], c[7], c[8], c[9], c[3]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("Riverside, Medical"), "\"Riverside, Medical\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(x)"), "'=HYPERLINK(x)");
        assert_eq!(csv_field("plain"), "plain");
    }
}
