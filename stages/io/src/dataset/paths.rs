//! Path handling for dataset folders: environment-variable expansion, lexical
//! normalisation, containment checks, hidden-file rules.

use std::path::{Component, Path, PathBuf};

/// Expands `$NAME` and `${NAME}` like Python's `os.path.expandvars` (which nnU-Net applies
/// to the paths of the `dataset` key): unknown variables are left as written.
pub fn expand_vars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let (name, end) = if b.get(i + 1) == Some(&b'{') {
                match s[i + 2..].find('}') {
                    Some(close) => (&s[i + 2..i + 2 + close], i + 3 + close),
                    None => ("", i),
                }
            } else {
                let len = s[i + 1..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
                (&s[i + 1..i + 1 + len], i + 1 + len)
            };
            if !name.is_empty() {
                if let Ok(v) = std::env::var(name) {
                    out.push_str(&v);
                    i = end;
                    continue;
                }
            }
            if end > i {
                out.push_str(&s[i..end]);
                i = end;
                continue;
            }
        }
        // Copy one UTF-8 character.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Removes `.` components and resolves `..` lexically (without touching the filesystem).
/// `..` above the root of an absolute path stays at the root; above the start of a relative
/// path it is kept, so a relative path that climbs out stays visibly outside.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    let mut pb = PathBuf::new();
    for c in out {
        pb.push(c.as_os_str());
    }
    pb
}

/// Where a declared path leads, relative to the dataset folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Inside the folder: the lexically normalised absolute path.
    Inside(PathBuf),
    /// Outside the folder (lexically, or through a symlink): the offending path.
    Escapes(PathBuf),
}

/// Resolves a path declared in dataset.json: variables expanded, relative paths joined to
/// `root` (which must be canonical), normalised. Escapes are detected lexically (`..`,
/// absolute paths elsewhere) and, for existing files, after resolving symlinks.
pub fn resolve_declared(root: &Path, raw: &str) -> Resolved {
    let expanded = expand_vars(raw);
    let p = Path::new(&expanded);
    let joined = if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    let lexical = normalize(&joined);
    if !lexical.starts_with(root) {
        // An absolute path may name the folder through another route (a symlinked parent).
        match lexical.canonicalize() {
            Ok(c) if c.starts_with(root) => return Resolved::Inside(c),
            _ => return Resolved::Escapes(lexical),
        }
    }
    if let Ok(c) = lexical.canonicalize() {
        if !c.starts_with(root) {
            return Resolved::Escapes(c);
        }
    }
    Resolved::Inside(lexical)
}

/// Whether a path lies inside `root` lexically (after normalisation).
pub fn lexically_inside(root: &Path, p: &Path) -> bool {
    let p = if p.is_absolute() { normalize(p) } else { normalize(&root.join(p)) };
    p.starts_with(normalize(root))
}

/// Hidden entries (macOS `._*` resource forks, dotfiles) are never data.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// `path` relative to `root` when inside it, otherwise unchanged (for messages).
pub fn display_rel(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_vars_only() {
        std::env::set_var("NNUNET_IO_TEST_VAR", "/data/x");
        assert_eq!(expand_vars("$NNUNET_IO_TEST_VAR/a"), "/data/x/a");
        assert_eq!(expand_vars("${NNUNET_IO_TEST_VAR}b"), "/data/xb");
        assert_eq!(expand_vars("$NNUNET_IO_UNSET_VAR/a"), "$NNUNET_IO_UNSET_VAR/a");
        assert_eq!(expand_vars("${unclosed"), "${unclosed");
        assert_eq!(expand_vars("a$"), "a$");
        assert_eq!(expand_vars("ünï$"), "ünï$");
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
        assert_eq!(normalize(Path::new("a/../../x")), PathBuf::from("../x"));
    }

    #[test]
    fn detects_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("ds");
        std::fs::create_dir_all(root.join("imagesTr")).unwrap();
        std::fs::write(root.join("imagesTr/a.nii.gz"), b"x").unwrap();
        assert_eq!(resolve_declared(&root, "./imagesTr/a.nii.gz"), Resolved::Inside(root.join("imagesTr/a.nii.gz")));
        assert!(matches!(resolve_declared(&root, "../outside.nii.gz"), Resolved::Escapes(_)));
        assert!(matches!(resolve_declared(&root, "imagesTr/../../x"), Resolved::Escapes(_)));
        assert!(matches!(resolve_declared(&root, "/etc/passwd"), Resolved::Escapes(_)));
        let abs = root.join("imagesTr/a.nii.gz");
        assert_eq!(resolve_declared(&root, abs.to_str().unwrap()), Resolved::Inside(abs));
        // A symlink inside pointing outside.
        std::fs::write(dir.path().join("secret.nii.gz"), b"y").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.nii.gz"), root.join("imagesTr/link.nii.gz")).unwrap();
            assert!(matches!(resolve_declared(&root, "imagesTr/link.nii.gz"), Resolved::Escapes(_)));
        }
        assert!(lexically_inside(&root, Path::new("imagesTr/x")));
        assert!(!lexically_inside(&root, Path::new("../x")));
        assert!(is_hidden("._case.nii.gz") && !is_hidden("case.nii.gz"));
    }
}
