//! What the unit tests share.

use std::path::PathBuf;

use crate::agreement::{Agreement, Context, SourceFile};
use crate::schemas::MessageSchemas;

/// The shipped MASH agreement, loaded from text built into the test (the core reads no file).
pub fn mash_agreement() -> Agreement {
    let schema = SourceFile {
        path: PathBuf::from("schemas/messages/mash_referral.json"),
        bytes: include_bytes!("../../schemas/messages/mash_referral.json").to_vec(),
    };
    let schemas = MessageSchemas::from_files(&PathBuf::from("schemas/messages"), vec![schema], vec![]).unwrap();
    let ctx = Context {
        systems: ["tt-case-system".to_owned()].into(),
        destinations: ["mash-drop".to_owned()].into(),
        schemas: &schemas,
    };
    let text = include_str!("../../isa-templates/nvtt-mash-referral.toml");
    Agreement::parse(&PathBuf::from("nvtt-mash-referral.toml"), text, &ctx).unwrap()
}
