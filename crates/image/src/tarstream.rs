//! Reading tar streams entry by entry with bounded extension headers.
//!
//! The `tar` crate's merged iterator reads GNU long names and PAX records into memory
//! without a limit; a hostile layer could declare a multi-gigabyte name. So this module reads
//! raw entries, merges the extension records itself, and refuses any larger than
//! [`MAX_EXTENSION`].

use std::io::Read;

use crate::hostile::{EntryKind, Hostile, MAX_EXTENSION, Reason, hostile};

/// One member's merged metadata (path and link after long-name/PAX overrides).
#[derive(Debug, Clone)]
pub struct Member {
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub device: (u32, u32),
    pub xattrs: Vec<PaxRecord>,
}

/// Errors while walking a stream: a malformed archive, a hostile member, or the visitor's own.
#[derive(Debug)]
pub enum WalkError<E> {
    Io(std::io::Error),
    Hostile(Hostile),
    Visitor(E),
}

#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<PaxRecord>,
}

/// Calls `visit` for every member of the archive, in order, with a reader of its content.
pub fn walk<R: Read, E>(
    reader: R,
    mut visit: impl FnMut(&Member, &mut dyn Read) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(WalkError::Io)?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(WalkError::Io)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let size = header.entry_size().map_err(WalkError::Io)?;
        let path_bytes = header.path_bytes().into_owned();
        let extension = |pending_slot: &Option<Vec<u8>>| -> Result<(), WalkError<E>> {
            if size > MAX_EXTENSION {
                return Err(WalkError::Hostile(hostile(
                    &path_bytes,
                    Reason::OversizedHeader(size),
                )));
            }
            if pending_slot.is_some() {
                return Err(WalkError::Hostile(hostile(
                    &path_bytes,
                    Reason::Unsupported("repeated extension header".into()),
                )));
            }
            Ok(())
        };
        if kind.is_gnu_longname() {
            extension(&pending.long_name)?;
            pending.long_name = Some(read_record(&mut entry).map_err(WalkError::Io)?);
            continue;
        }
        if kind.is_gnu_longlink() {
            extension(&pending.long_link)?;
            pending.long_link = Some(read_record(&mut entry).map_err(WalkError::Io)?);
            continue;
        }
        if kind.is_pax_local_extensions() {
            extension(&None)?;
            let data = read_record(&mut entry).map_err(WalkError::Io)?;
            pending.pax.extend(
                parse_pax(&data).map_err(|m| {
                    WalkError::Hostile(hostile(&path_bytes, Reason::Unsupported(m)))
                })?,
            );
            continue;
        }
        if kind.is_pax_global_extensions() {
            extension(&None)?;
            read_record(&mut entry).map_err(WalkError::Io)?;
            continue;
        }
        let taken = std::mem::take(&mut pending);
        let member = member(&header, size, taken).map_err(WalkError::Hostile)?;
        visit(&member, &mut entry).map_err(WalkError::Visitor)?;
    }
    if pending.long_name.is_some() || pending.long_link.is_some() || !pending.pax.is_empty() {
        return Err(WalkError::Io(std::io::Error::other(
            "extension header without a member",
        )));
    }
    Ok(())
}

fn read_record(entry: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    entry.take(MAX_EXTENSION).read_to_end(&mut data)?;
    // GNU long names carry a trailing NUL.
    while data.last() == Some(&0) {
        data.pop();
    }
    Ok(data)
}

/// A PAX record's key and value.
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// Parses PAX records: `<len> <key>=<value>\n`, each length counting the whole record.
pub fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record with a bad length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("pax record length out of bounds".into());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without '='")?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn member(header: &tar::Header, size: u64, pending: Pending) -> Result<Member, Hostile> {
    let mut path = pending
        .long_name
        .unwrap_or_else(|| header.path_bytes().into_owned());
    let mut link = pending
        .long_link
        .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
    let mut uid = header.uid().unwrap_or(0);
    let mut gid = header.gid().unwrap_or(0);
    let mut mtime = header.mtime().unwrap_or(0);
    let mut xattrs = Vec::new();
    for (key, value) in pending.pax {
        let number = || {
            std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
        };
        match key.as_slice() {
            b"path" => path = value,
            b"linkpath" => link = Some(value),
            b"uid" => uid = number().unwrap_or(uid),
            b"gid" => gid = number().unwrap_or(gid),
            b"mtime" => mtime = number().unwrap_or(mtime),
            b"size" if number() != Some(size) => {
                return Err(hostile(
                    &path,
                    Reason::Unsupported("pax size override".into()),
                ));
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value));
            }
            _ => {}
        }
    }
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Char => EntryKind::CharDevice,
        tar::EntryType::Block => EntryKind::BlockDevice,
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(hostile(
                &path,
                Reason::Unsupported(format!("tar entry type {:?}", other.as_byte() as char)),
            ));
        }
    };
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    Ok(Member {
        path,
        link,
        kind,
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        uid,
        gid,
        mtime,
        size,
        device,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pax_records() {
        let recs = parse_pax(b"16 path=abcdefg\n20 linkpath=/x/y/zz\n").unwrap();
        assert_eq!(recs[0], (b"path".to_vec(), b"abcdefg".to_vec()));
        assert_eq!(recs[1], (b"linkpath".to_vec(), b"/x/y/zz".to_vec()));
        assert!(parse_pax(b"99 path=a\n").is_err());
        assert!(parse_pax(b"x path=a\n").is_err());
    }

    #[test]
    fn oversized_long_name_is_hostile() {
        let mut data = Vec::new();
        let mut header = tar::Header::new_gnu();
        header.set_path("././@LongLink").unwrap();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(MAX_EXTENSION + 1);
        header.set_cksum();
        data.extend_from_slice(header.as_bytes());
        data.extend(std::iter::repeat_n(b'a', (MAX_EXTENSION + 512) as usize));
        let result = walk(&data[..], |_, _| Ok::<(), ()>(()));
        match result {
            Err(WalkError::Hostile(h)) => assert!(matches!(h.reason, Reason::OversizedHeader(_))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_names_are_merged() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(200));
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o640);
        builder
            .append_data(&mut header, &long, &b"abc"[..])
            .unwrap();
        let data = builder.into_inner().unwrap();
        let mut seen = vec![];
        walk(&data[..], |m, r| {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            seen.push((m.path.clone(), m.mode, s));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(seen, vec![(long.into_bytes(), 0o640, "abc".to_string())]);
    }

    proptest! {
        #[test]
        fn pax_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_pax(&data);
        }

        #[test]
        fn walk_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = walk(&data[..], |_, r| { let _ = std::io::copy(r, &mut std::io::sink()); Ok::<(), ()>(()) });
        }
    }
}
