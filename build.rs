//! Rebuild when a migration is added: `sqlx::migrate!` embeds the migrations folders at compile
//! time, and Cargo does not otherwise notice a new file there.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
