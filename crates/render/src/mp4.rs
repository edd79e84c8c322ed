//! A small ISO-BMFF (MP4) box reader/writer, and the 360° metadata injector.
//!
//! Only `moov` is parsed into a tree ([`Node`]); everything else in the file is copied byte for byte.
//! Box layout follows ISO/IEC 14496-12: `size u32 | type [u8; 4] | (largesize u64 if size == 1) |
//! payload` (size 0 = to the end of the enclosing space). Containers we descend into are listed in
//! [`is_container`]; `stsd` and visual sample entries have fixed fields before their children
//! ([`prefix_len`]).
//!
//! Spherical metadata (google/spatial-media `docs/spherical-video-v2-rfc.md` and
//! `docs/spherical-video-rfc.md`):
//! - V2: `st3d` (FullBox, `stereo_mode` u8 = 0 mono) and `sv3d { svhd (FullBox, metadata_source
//!   "…\0"), proj { prhd (FullBox, yaw/pitch/roll i32 16.16 = 0), equi (FullBox, 4 × u32 bounds = 0,
//!   the full sphere) } }` appended to the video sample entry (`avc1`, …).
//! - V1: a `uuid` box `ffcc8263-f855-4a93-8814-587a02521fdd` + RDF/XML appended to the video `trak`.
//!
//! Every ancestor's size grows with the tree rewrite; when `moov` precedes the media data, every
//! `stco`/`co64` chunk offset past `moov` is shifted by the growth of `moov`.

use std::path::Path;

/// Spherical Video V1 box UUID.
pub const SPHERICAL_V1_UUID: [u8; 16] = [
    0xff, 0xcc, 0x82, 0x63, 0xf8, 0x55, 0x4a, 0x93, 0x88, 0x14, 0x58, 0x7a, 0x02, 0x52, 0x1f, 0xdd,
];

#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error("{0}")]
    Format(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn bad(msg: impl Into<String>) -> Mp4Error {
    Mp4Error::Format(msg.into())
}

/// One box of the parsed tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A box kept as bytes (payload only, without its header).
    Leaf { typ: [u8; 4], payload: Vec<u8> },
    /// A box whose payload is `prefix` (fixed fields) followed by child boxes.
    Container {
        typ: [u8; 4],
        prefix: Vec<u8>,
        children: Vec<Node>,
    },
}

impl Node {
    pub fn typ(&self) -> [u8; 4] {
        match self {
            Node::Leaf { typ, .. } | Node::Container { typ, .. } => *typ,
        }
    }

    pub fn children(&self) -> &[Node] {
        match self {
            Node::Container { children, .. } => children,
            Node::Leaf { .. } => &[],
        }
    }

    fn children_mut(&mut self) -> Option<&mut Vec<Node>> {
        match self {
            Node::Container { children, .. } => Some(children),
            Node::Leaf { .. } => None,
        }
    }

    pub fn child(&self, typ: &[u8; 4]) -> Option<&Node> {
        self.children().iter().find(|c| &c.typ() == typ)
    }

    fn child_mut(&mut self, typ: &[u8; 4]) -> Option<&mut Node> {
        self.children_mut()?.iter_mut().find(|c| &c.typ() == typ)
    }

    /// Payload length (without the header).
    pub fn payload_len(&self) -> u64 {
        match self {
            Node::Leaf { payload, .. } => payload.len() as u64,
            Node::Container {
                prefix, children, ..
            } => prefix.len() as u64 + children.iter().map(Node::size).sum::<u64>(),
        }
    }

    /// Total size with the header (a 64-bit header when it does not fit 32 bits).
    pub fn size(&self) -> u64 {
        let p = self.payload_len();
        if p + 8 > u32::MAX as u64 {
            p + 16
        } else {
            p + 8
        }
    }

    /// Serialise.
    pub fn write(&self, out: &mut Vec<u8>) {
        let size = self.size();
        if size > u32::MAX as u64 {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&self.typ());
            out.extend_from_slice(&size.to_be_bytes());
        } else {
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(&self.typ());
        }
        match self {
            Node::Leaf { payload, .. } => out.extend_from_slice(payload),
            Node::Container {
                prefix, children, ..
            } => {
                out.extend_from_slice(prefix);
                for c in children {
                    c.write(out);
                }
            }
        }
    }
}

/// Boxes whose payload is (after [`prefix_len`] bytes) a list of boxes.
fn is_container(typ: &[u8; 4]) -> bool {
    matches!(
        typ,
        b"moov"
            | b"trak"
            | b"mdia"
            | b"minf"
            | b"stbl"
            | b"edts"
            | b"dinf"
            | b"mvex"
            | b"stsd"
            | b"sv3d"
            | b"proj"
    ) || is_visual_sample_entry(typ)
}

fn is_visual_sample_entry(typ: &[u8; 4]) -> bool {
    matches!(
        typ,
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01" | b"vp09" | b"vp08" | b"mp4v" | b"encv"
    )
}

/// Fixed fields before the children: `stsd` (FullBox header + entry_count = 8 bytes); a
/// VisualSampleEntry (SampleEntry 8 + 70 bytes of visual fields = 78 bytes).
fn prefix_len(typ: &[u8; 4]) -> usize {
    if typ == b"stsd" {
        8
    } else if is_visual_sample_entry(typ) {
        78
    } else {
        0
    }
}

/// A top-level box's position: `(type, start, header length, total size)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub typ: [u8; 4],
    pub start: u64,
    pub header: u64,
    pub size: u64,
}

/// Box headers in `bytes[from..to]` (no descent).
pub fn spans(bytes: &[u8], from: u64, to: u64) -> Result<Vec<Span>, Mp4Error> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        if to - pos < 8 {
            return Err(bad(format!("truncated box header at byte {pos}")));
        }
        let p = pos as usize;
        let size32 = u32::from_be_bytes(bytes[p..p + 4].try_into().unwrap()) as u64;
        let typ: [u8; 4] = bytes[p + 4..p + 8].try_into().unwrap();
        let (size, header) = match size32 {
            1 => {
                if to - pos < 16 {
                    return Err(bad(format!("truncated 64-bit box header at byte {pos}")));
                }
                (
                    u64::from_be_bytes(bytes[p + 8..p + 16].try_into().unwrap()),
                    16,
                )
            }
            0 => (to - pos, 8),
            s => (s, 8),
        };
        if size < header || pos + size > to {
            return Err(bad(format!(
                "box '{}' at byte {pos} has size {size}, which does not fit its parent (ends at {to})",
                String::from_utf8_lossy(&typ)
            )));
        }
        out.push(Span {
            typ,
            start: pos,
            header,
            size,
        });
        pos += size;
    }
    Ok(out)
}

/// Parse one box (and its descendants if it is a known container).
pub fn parse_node(bytes: &[u8], span: &Span) -> Result<Node, Mp4Error> {
    let body = (span.start + span.header) as usize;
    let end = (span.start + span.size) as usize;
    if is_container(&span.typ) {
        let pl = prefix_len(&span.typ);
        if body + pl > end {
            return Err(bad(format!(
                "box '{}' at byte {} is too short",
                String::from_utf8_lossy(&span.typ),
                span.start
            )));
        }
        let children = spans(bytes, (body + pl) as u64, end as u64)?
            .iter()
            .map(|s| parse_node(bytes, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Node::Container {
            typ: span.typ,
            prefix: bytes[body..body + pl].to_vec(),
            children,
        })
    } else {
        Ok(Node::Leaf {
            typ: span.typ,
            payload: bytes[body..end].to_vec(),
        })
    }
}

fn full_box(typ: &[u8; 4], body: &[u8]) -> Node {
    let mut payload = vec![0u8; 4]; // version 0, flags 0
    payload.extend_from_slice(body);
    Node::Leaf { typ: *typ, payload }
}

/// V2 boxes: `st3d` (mono) and `sv3d` (equirectangular, full sphere, no rotation).
pub fn spherical_v2_boxes(software: &str) -> [Node; 2] {
    let st3d = full_box(b"st3d", &[0]);
    let mut src = software.as_bytes().to_vec();
    src.push(0);
    let svhd = full_box(b"svhd", &src);
    let prhd = full_box(b"prhd", &[0u8; 12]);
    let equi = full_box(b"equi", &[0u8; 16]);
    let proj = Node::Container {
        typ: *b"proj",
        prefix: vec![],
        children: vec![prhd, equi],
    };
    let sv3d = Node::Container {
        typ: *b"sv3d",
        prefix: vec![],
        children: vec![svhd, proj],
    };
    [st3d, sv3d]
}

/// V1 box: `uuid` + RDF/XML in the GSpherical namespace.
pub fn spherical_v1_box(software: &str) -> Node {
    let xml = format!(
        "<?xml version=\"1.0\"?><rdf:SphericalVideo\n\
         xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"\n\
         xmlns:GSpherical=\"http://ns.google.com/videos/1.0/spherical/\">\
         <GSpherical:Spherical>true</GSpherical:Spherical>\
         <GSpherical:Stitched>true</GSpherical:Stitched>\
         <GSpherical:StitchingSoftware>{software}</GSpherical:StitchingSoftware>\
         <GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType>\
         </rdf:SphericalVideo>"
    );
    let mut payload = SPHERICAL_V1_UUID.to_vec();
    payload.extend_from_slice(xml.as_bytes());
    Node::Leaf {
        typ: *b"uuid",
        payload,
    }
}

fn is_v1_uuid(n: &Node) -> bool {
    matches!(n, Node::Leaf { typ, payload } if typ == b"uuid" && payload.starts_with(&SPHERICAL_V1_UUID))
}

/// The handler type of a `trak` (`vide`, `soun`, …).
fn handler(trak: &Node) -> Option<[u8; 4]> {
    match trak.child(b"mdia")?.child(b"hdlr")? {
        Node::Leaf { payload, .. } if payload.len() >= 12 => payload[8..12].try_into().ok(),
        _ => None,
    }
}

/// Add `delta` to every `stco`/`co64` entry `>= threshold` in the tree.
fn shift_chunk_offsets(node: &mut Node, threshold: u64, delta: i64) -> Result<(), Mp4Error> {
    match node {
        Node::Leaf { typ, payload } if typ == b"stco" || typ == b"co64" => {
            let wide = typ == b"co64";
            let w = if wide { 8 } else { 4 };
            if payload.len() < 8 {
                return Err(bad("stco/co64 box too short"));
            }
            let n = u32::from_be_bytes(payload[4..8].try_into().unwrap()) as usize;
            if payload.len() < 8 + n * w {
                return Err(bad("stco/co64 entry count exceeds the box"));
            }
            for k in 0..n {
                let at = 8 + k * w;
                let v = if wide {
                    u64::from_be_bytes(payload[at..at + 8].try_into().unwrap())
                } else {
                    u32::from_be_bytes(payload[at..at + 4].try_into().unwrap()) as u64
                };
                if v >= threshold {
                    let nv = (v as i64 + delta) as u64;
                    if wide {
                        payload[at..at + 8].copy_from_slice(&nv.to_be_bytes());
                    } else {
                        let nv32 = u32::try_from(nv).map_err(|_| {
                            bad("a chunk offset no longer fits stco (32 bits); re-mux with co64")
                        })?;
                        payload[at..at + 4].copy_from_slice(&nv32.to_be_bytes());
                    }
                }
            }
            Ok(())
        }
        Node::Container { children, .. } => {
            for c in children {
                shift_chunk_offsets(c, threshold, delta)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Insert (or replace) V2 and V1 spherical metadata in the first video track of an MP4 file held in
/// memory; returns the new file.
pub fn inject_spherical_bytes(file: &[u8], software: &str) -> Result<Vec<u8>, Mp4Error> {
    let top = spans(file, 0, file.len() as u64)?;
    let moov_span = *top
        .iter()
        .find(|s| &s.typ == b"moov")
        .ok_or_else(|| bad("no 'moov' box: not an MP4 file, or an unfinished one"))?;
    let mut moov = parse_node(file, &moov_span)?;
    let traks = moov
        .children_mut()
        .ok_or_else(|| bad("moov is not a container"))?;
    let trak = traks
        .iter_mut()
        .find(|t| t.typ() == *b"trak" && handler(t) == Some(*b"vide"))
        .ok_or_else(|| bad("no video track in moov"))?;
    // V2 at the end of the sample entry.
    let entry = trak
        .child_mut(b"mdia")
        .and_then(|n| n.child_mut(b"minf"))
        .and_then(|n| n.child_mut(b"stbl"))
        .and_then(|n| n.child_mut(b"stsd"))
        .and_then(|n| n.children_mut())
        .and_then(|c| c.first_mut())
        .ok_or_else(|| bad("the video track has no stsd sample entry"))?;
    let entry_typ = entry.typ();
    let kids = entry.children_mut().ok_or_else(|| {
        bad(format!(
            "unsupported video sample entry '{}'",
            String::from_utf8_lossy(&entry_typ)
        ))
    })?;
    kids.retain(|c| c.typ() != *b"st3d" && c.typ() != *b"sv3d");
    kids.extend(spherical_v2_boxes(software));
    // V1 at the end of the trak.
    let tkids = trak.children_mut().expect("trak is a container");
    tkids.retain(|c| !is_v1_uuid(c));
    tkids.push(spherical_v1_box(software));

    let delta = moov.size() as i64 - moov_span.size as i64;
    let moov_end = moov_span.start + moov_span.size;
    // Media after moov moves by delta; media before it stays.
    let media_after = top.iter().any(|s| s.start >= moov_end && &s.typ == b"mdat");
    if media_after && delta != 0 {
        shift_chunk_offsets(&mut moov, moov_end, delta)?;
    }
    let mut out = Vec::with_capacity(file.len() + delta.max(0) as usize);
    out.extend_from_slice(&file[..moov_span.start as usize]);
    moov.write(&mut out);
    out.extend_from_slice(&file[moov_end as usize..]);
    Ok(out)
}

/// [`inject_spherical_bytes`] on a file, rewritten atomically.
pub fn inject_spherical(path: &Path, software: &str) -> Result<(), Mp4Error> {
    let io = |source| Mp4Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let out = inject_spherical_bytes(&bytes, software).map_err(|e| match e {
        Mp4Error::Format(m) => Mp4Error::Format(format!("{}: {m}", path.display())),
        e => e,
    })?;
    flythrough_core::run::write_atomic(path, &out).map_err(io)
}

/// What spherical metadata a file carries (for tests and the report).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SphericalInfo {
    pub v2_equirect: bool,
    pub v2_mono: bool,
    pub v1_equirect: bool,
    pub sample_entry: String,
    pub width: u16,
    pub height: u16,
}

/// Read the spherical metadata of the first video track.
pub fn spherical_info(file: &[u8]) -> Result<SphericalInfo, Mp4Error> {
    let top = spans(file, 0, file.len() as u64)?;
    let moov_span = top
        .iter()
        .find(|s| &s.typ == b"moov")
        .ok_or_else(|| bad("no moov"))?;
    let moov = parse_node(file, moov_span)?;
    let trak = moov
        .children()
        .iter()
        .find(|t| t.typ() == *b"trak" && handler(t) == Some(*b"vide"))
        .ok_or_else(|| bad("no video track"))?;
    let mut info = SphericalInfo::default();
    let entry = trak
        .child(b"mdia")
        .and_then(|n| n.child(b"minf"))
        .and_then(|n| n.child(b"stbl"))
        .and_then(|n| n.child(b"stsd"))
        .and_then(|n| n.children().first())
        .ok_or_else(|| bad("no sample entry"))?;
    info.sample_entry = String::from_utf8_lossy(&entry.typ()).into_owned();
    if let Node::Container { prefix, .. } = entry {
        info.width = u16::from_be_bytes([prefix[24], prefix[25]]);
        info.height = u16::from_be_bytes([prefix[26], prefix[27]]);
    }
    info.v2_equirect = entry
        .child(b"sv3d")
        .and_then(|n| n.child(b"proj"))
        .and_then(|n| n.child(b"equi"))
        .is_some();
    info.v2_mono = matches!(entry.child(b"st3d"), Some(Node::Leaf { payload, .. }) if payload.get(4) == Some(&0));
    info.v1_equirect = trak.children().iter().any(|c| {
        is_v1_uuid(c)
            && matches!(c, Node::Leaf { payload, .. }
                if String::from_utf8_lossy(&payload[16..]).contains("<GSpherical:ProjectionType>equirectangular<"))
    });
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(typ: &[u8; 4], payload: &[u8]) -> Node {
        Node::Leaf {
            typ: *typ,
            payload: payload.to_vec(),
        }
    }
    fn cont(typ: &[u8; 4], prefix: Vec<u8>, children: Vec<Node>) -> Node {
        Node::Container {
            typ: *typ,
            prefix,
            children,
        }
    }
    fn bytes(n: &Node) -> Vec<u8> {
        let mut v = Vec::new();
        n.write(&mut v);
        v
    }

    /// A minimal MP4: ftyp, [moov before or after mdat] with one video trak, stco pointing at the
    /// two 4-byte samples in mdat.
    fn tiny_mp4(moov_first: bool) -> (Vec<u8>, [u8; 8]) {
        let ftyp = leaf(b"ftyp", b"isom\0\0\x02\0isomavc1");
        let media = *b"SAMPLEAB";
        let mdat = leaf(b"mdat", &media);
        let mk_moov = |offset: u32| {
            let mut hdlr = vec![0u8; 8];
            hdlr.extend_from_slice(b"vide");
            hdlr.extend_from_slice(&[0u8; 13]);
            let mut entry_prefix = vec![0u8; 78];
            entry_prefix[7] = 1; // data_reference_index
            entry_prefix[24..26].copy_from_slice(&128u16.to_be_bytes());
            entry_prefix[26..28].copy_from_slice(&64u16.to_be_bytes());
            let avc1 = cont(b"avc1", entry_prefix, vec![leaf(b"avcC", &[1, 2, 3, 4])]);
            let mut stsd_prefix = vec![0u8; 8];
            stsd_prefix[7] = 1;
            let stsd = cont(b"stsd", stsd_prefix, vec![avc1]);
            let mut stco = vec![0u8; 4];
            stco.extend_from_slice(&2u32.to_be_bytes());
            stco.extend_from_slice(&offset.to_be_bytes());
            stco.extend_from_slice(&(offset + 4).to_be_bytes());
            let stbl = cont(b"stbl", vec![], vec![stsd, leaf(b"stco", &stco)]);
            let minf = cont(
                b"minf",
                vec![],
                vec![leaf(b"vmhd", &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), stbl],
            );
            let mdia = cont(
                b"mdia",
                vec![],
                vec![leaf(b"mdhd", &[0u8; 24]), leaf(b"hdlr", &hdlr), minf],
            );
            let trak = cont(b"trak", vec![], vec![leaf(b"tkhd", &[0u8; 84]), mdia]);
            cont(b"moov", vec![], vec![leaf(b"mvhd", &[0u8; 100]), trak])
        };
        let ftyp_len = ftyp.size() as u32;
        let moov_len = mk_moov(0).size() as u32;
        let mut file = bytes(&ftyp);
        if moov_first {
            file.extend(bytes(&mk_moov(ftyp_len + moov_len + 8)));
            file.extend(bytes(&mdat));
        } else {
            file.extend(bytes(&mdat));
            file.extend(bytes(&mk_moov(ftyp_len + 8)));
        }
        (file, media)
    }

    /// Follow stco to read the samples back.
    fn samples(file: &[u8]) -> Vec<[u8; 4]> {
        let top = spans(file, 0, file.len() as u64).unwrap();
        let moov = parse_node(file, top.iter().find(|s| &s.typ == b"moov").unwrap()).unwrap();
        let stco = moov
            .child(b"trak")
            .unwrap()
            .child(b"mdia")
            .unwrap()
            .child(b"minf")
            .unwrap()
            .child(b"stbl")
            .unwrap()
            .child(b"stco")
            .unwrap();
        let Node::Leaf { payload, .. } = stco else {
            panic!()
        };
        (0..2)
            .map(|k| {
                let o =
                    u32::from_be_bytes(payload[8 + 4 * k..12 + 4 * k].try_into().unwrap()) as usize;
                file[o..o + 4].try_into().unwrap()
            })
            .collect()
    }

    #[test]
    fn parse_write_round_trip_is_byte_exact() {
        for first in [false, true] {
            let (file, _) = tiny_mp4(first);
            let top = spans(&file, 0, file.len() as u64).unwrap();
            let mut out = Vec::new();
            for s in &top {
                parse_node(&file, s).unwrap().write(&mut out);
            }
            assert_eq!(out, file);
        }
    }

    #[test]
    fn injection_grows_every_parent_and_keeps_media_reachable() {
        for first in [false, true] {
            let (file, media) = tiny_mp4(first);
            let want: Vec<[u8; 4]> = vec![
                media[..4].try_into().unwrap(),
                media[4..].try_into().unwrap(),
            ];
            assert_eq!(samples(&file), want);
            let out = inject_spherical_bytes(&file, "flythrough").unwrap();
            // Sizes are consistent all the way down (spans() checks each box fits its parent).
            let top = spans(&out, 0, out.len() as u64).unwrap();
            assert_eq!(top.iter().map(|s| s.size).sum::<u64>(), out.len() as u64);
            let info = spherical_info(&out).unwrap();
            assert!(
                info.v2_equirect && info.v2_mono && info.v1_equirect,
                "{info:?}"
            );
            assert_eq!(
                (info.width, info.height, info.sample_entry.as_str()),
                (128, 64, "avc1")
            );
            // Chunk offsets still point at the samples (shifted when moov comes first).
            assert_eq!(samples(&out), samples(&file), "moov first: {first}");
            // Growth = st3d (13) + sv3d (8 + svhd 12+11 + proj 8 + prhd 24 + equi 28) + uuid.
            let v2: u64 = spherical_v2_boxes("flythrough")
                .iter()
                .map(Node::size)
                .sum();
            assert_eq!(v2, 13 + 8 + (12 + 11) + 8 + (12 + 12) + (12 + 16));
            let growth = v2 + spherical_v1_box("flythrough").size();
            assert_eq!(out.len() as u64, file.len() as u64 + growth);
            // Idempotent: injecting again replaces, it does not stack.
            let again = inject_spherical_bytes(&out, "flythrough").unwrap();
            assert_eq!(again, out);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = inject_spherical_bytes(b"\0\0\0\x10ftypisom\0\0\0\0", "x").unwrap_err();
        assert!(e.to_string().contains("no 'moov'"), "{e}");
        let e = inject_spherical_bytes(b"\0\0\x01\0moov", "x").unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
