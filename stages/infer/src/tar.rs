//! A minimal POSIX ustar writer and a strict reader, for model bundles.
//!
//! The writer emits regular files only, deterministic headers (mode 0644, uid/gid 0,
//! mtime 0). The reader accepts regular files and directories and rejects everything else
//! (symlinks, hard links, devices, pax/GNU extension headers) and every path that is
//! absolute or climbs out with `..`.

use std::io::{self, Read, Write};
use std::path::{Component, Path};

const BLOCK: usize = 512;

fn octal(field: &mut [u8], v: u64) -> Result<(), String> {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return Err(format!("value {v} does not fit a {}-byte tar field", field.len()));
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    Ok(())
}

fn header(path: &str, size: u64, typeflag: u8, link: &str) -> Result<[u8; BLOCK], String> {
    let mut h = [0u8; BLOCK];
    let bytes = path.as_bytes();
    let (prefix, name) = if bytes.len() <= 100 {
        ("", path)
    } else {
        // Split at a '/' so that name <= 100 and prefix <= 155.
        let cut = path
            .char_indices()
            .filter(|&(i, c)| c == '/' && i <= 155 && bytes.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next()
            .ok_or_else(|| format!("path too long for a tar header: {path}"))?;
        (&path[..cut], &path[cut + 1..])
    };
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644)?;
    octal(&mut h[108..116], 0)?;
    octal(&mut h[116..124], 0)?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], 0)?;
    h[156] = typeflag;
    if link.len() > 100 {
        return Err(format!("link target too long: {link}"));
    }
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Streams a tar archive.
pub struct TarWriter<W: Write> {
    w: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        TarWriter { w }
    }

    /// Appends a regular file of `size` bytes read from `data`.
    pub fn append(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        self.append_entry(path, size, b'0', "", data)
    }

    /// Appends an entry of any type (tests use it to build hostile archives).
    pub fn append_entry(
        &mut self,
        path: &str,
        size: u64,
        typeflag: u8,
        link: &str,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let h = header(path, size, typeflag, link).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.w.write_all(&h)?;
        let n = io::copy(&mut data.take(size), &mut self.w)?;
        if n != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path}: {n} of {size} bytes")));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.w.write_all(&vec![0u8; pad])
    }

    /// Writes the two zero end blocks and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Kind of an archive entry the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// One entry header.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub kind: EntryKind,
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s: String = f.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(f: &[u8]) -> Result<String, String> {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8(f[..end].to_vec()).map_err(|_| "entry name is not UTF-8".to_string())
}

/// Checks that an archive path stays inside the extraction folder: relative, no `..`, no
/// root or drive prefix.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty entry name".into());
    }
    if path.starts_with('/') || path.contains('\\') {
        return Err(format!("entry \"{path}\" is an absolute or non-portable path"));
    }
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("entry \"{path}\" escapes the target folder (\"..\")")),
            _ => return Err(format!("entry \"{path}\" is an absolute path")),
        }
    }
    Ok(())
}

/// Reads a tar archive entry by entry.
pub struct TarReader<R: Read> {
    r: R,
    /// Data bytes (plus padding) of the current entry not yet consumed.
    pending: u64,
    done: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader { r, pending: 0, done: false }
    }

    fn skip_pending(&mut self) -> io::Result<()> {
        let n = io::copy(&mut (&mut self.r).take(self.pending), &mut io::sink())?;
        if n != self.pending {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive is truncated"));
        }
        self.pending = 0;
        Ok(())
    }

    /// The next entry, or `None` at the end. Errors for unsupported entry types and unsafe
    /// paths (the error text names the entry).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, String> {
        if self.done {
            return Ok(None);
        }
        self.skip_pending().map_err(|e| e.to_string())?;
        let mut h = [0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut h[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        if got < BLOCK {
            return Err("archive is truncated (partial header)".into());
        }
        if h.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(None);
        }
        let stored = parse_octal(&h[148..156]).ok_or("bad header checksum field")?;
        let mut hc = h;
        hc[148..156].fill(b' ');
        let sum: u64 = hc.iter().map(|&b| b as u64).sum();
        if sum != stored {
            return Err("header checksum mismatch (corrupt archive)".into());
        }
        let name = cstr(&h[..100])?;
        let prefix = if &h[257..262] == b"ustar" { cstr(&h[345..500])? } else { String::new() };
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if h[124] & 0x80 != 0 {
            return Err(format!("entry \"{path}\": base-256 sizes are not supported"));
        }
        let size = parse_octal(&h[124..136]).ok_or_else(|| format!("entry \"{path}\": bad size field"))?;
        let kind = match h[156] {
            b'0' | 0 => EntryKind::File,
            b'5' => EntryKind::Dir,
            b'1' => return Err(format!("entry \"{path}\" is a hard link; links are not allowed")),
            b'2' => return Err(format!("entry \"{path}\" is a symbolic link; links are not allowed")),
            t => return Err(format!("entry \"{path}\" has unsupported type '{}'", t as char)),
        };
        check_relative(path.trim_end_matches('/'))?;
        self.pending = size + ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64);
        Ok(Some(Entry { path: path.trim_end_matches('/').to_string(), size, kind }))
    }

    /// Copies the current entry's data to `w` (call once, right after `next_entry`).
    pub fn copy_data(&mut self, size: u64, w: &mut dyn Write) -> io::Result<()> {
        let n = io::copy(&mut (&mut self.r).take(size), w)?;
        if n != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive is truncated"));
        }
        self.pending -= size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_long_names() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let mut w = TarWriter::new(Vec::new());
        w.append("a.txt", 3, &mut &b"abc"[..]).unwrap();
        w.append(&long, 0, &mut &b""[..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut r = TarReader::new(&bytes[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.path.as_str(), e.size), ("a.txt", 3));
        let mut out = vec![];
        r.copy_data(e.size, &mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(r.next_entry().unwrap().unwrap().path, long);
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn unsafe_paths_and_links_rejected() {
        for p in ["../x", "a/../../x", "/etc/passwd", "a\\b"] {
            assert!(check_relative(p).is_err(), "{p}");
        }
        assert!(check_relative("a/./b").is_ok());
        let mut w = TarWriter::new(Vec::new());
        w.append_entry("link", 0, b'2', "/etc/passwd", &mut &b""[..]).unwrap();
        let bytes = w.finish().unwrap();
        let e = TarReader::new(&bytes[..]).next_entry().unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
