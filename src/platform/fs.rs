//! Files that hold secrets: written private (0600) from creation, and refused when read if other
//! users could read them too.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Writes a file, creating its directory; secrets get mode 0600 from the moment they exist.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // An existing file keeps its old mode through `open`; set it explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A secret file (a private key, a pseudonymisation key, a password) must be readable by its owner
/// only. The error names the file and the fix, never the contents.
pub fn ensure_private(path: &Path) -> Result<(), String> {
    let mode = fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} can be read by other users (mode {:o}); it holds a secret: run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_readable_by_others_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.key");
        write_file(&path, b"00", true).unwrap();
        assert_eq!(ensure_private(&path), Ok(()));
        for mode in [0o644, 0o640, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = ensure_private(&path).unwrap_err();
            assert!(err.contains("chmod 600") && err.contains("index.key"), "{err}");
            assert!(!err.contains("00\n"));
        }
    }
}
