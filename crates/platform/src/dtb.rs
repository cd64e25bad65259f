//! A small, panic-free reader for flattened device trees (DTB, devicetree
//! specification v0.4 chapter 5).
//!
//! [`Dtb::parse`] checks the whole blob once (header, block bounds, every token,
//! every name) and builds an index of nodes and properties that borrows from the
//! input. Everything after that is plain slice lookups with `get`, so no input,
//! however malformed, can make it panic. (The `fdt` crate is not used here: on
//! malformed blobs it indexes out of bounds and `expect`s, e.g. when a header
//! offset points past the buffer.)

use alloc::vec::Vec;
use core::fmt;

/// The FDT header magic (big-endian `0xd00dfeed`).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the FDT header (version 17) in bytes.
pub const FDT_HEADER_SIZE: usize = 40;
/// The deepest node nesting accepted (the same limit as Linux and libfdt).
pub const MAX_DEPTH: usize = 64;

const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

/// Why a blob is not a well-formed flattened device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// The buffer is shorter than the 40-byte header.
    TruncatedHeader,
    /// The header does not start with the magic `0xd00dfeed`.
    BadMagic,
    /// `totalsize` is smaller than the header or larger than the buffer.
    BadTotalSize,
    /// `version` is below 17 or `last_comp_version` above 17.
    UnsupportedVersion,
    /// The structure, strings or memory-reservation block lies outside `totalsize`.
    BlockOutOfBounds,
    /// The structure block is not 4-byte aligned or the reservation block not 8-byte aligned.
    Misaligned,
    /// The memory-reservation block has no terminating all-zero entry.
    UnterminatedMemReserve,
    /// The structure block ends in the middle of a token, or before `FDT_END`.
    Truncated,
    /// A token that is not one of BEGIN_NODE, END_NODE, PROP, NOP, END.
    BadToken,
    /// A node name is not NUL-terminated inside the structure block or not UTF-8.
    BadNodeName,
    /// A property's name offset is outside the strings block, or the name is not
    /// NUL-terminated or not UTF-8.
    BadPropertyName,
    /// A property appears outside any node.
    PropertyOutsideNode,
    /// END_NODE without a matching BEGIN_NODE, or FDT_END while a node is open.
    Unbalanced,
    /// A second top-level node after the root was closed.
    MultipleRoots,
    /// The structure block contains no node at all.
    NoRoot,
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DtbError::TruncatedHeader => "buffer shorter than the FDT header",
            DtbError::BadMagic => "bad FDT magic",
            DtbError::BadTotalSize => "FDT totalsize out of range",
            DtbError::UnsupportedVersion => "unsupported FDT version",
            DtbError::BlockOutOfBounds => "FDT block outside the blob",
            DtbError::Misaligned => "misaligned FDT block",
            DtbError::UnterminatedMemReserve => "unterminated memory reservation block",
            DtbError::Truncated => "truncated FDT structure block",
            DtbError::BadToken => "unknown FDT token",
            DtbError::BadNodeName => "malformed node name",
            DtbError::BadPropertyName => "malformed property name",
            DtbError::PropertyOutsideNode => "property outside any node",
            DtbError::Unbalanced => "unbalanced BEGIN_NODE/END_NODE",
            DtbError::MultipleRoots => "more than one root node",
            DtbError::NoRoot => "no root node",
            DtbError::TooDeep => "nodes nested too deeply",
        };
        f.write_str(s)
    }
}

/// One entry of the header's memory-reservation block (`/memreserve/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemReserve {
    /// Physical start address.
    pub address: u64,
    /// Length in bytes.
    pub size: u64,
}

/// A property: its name and raw (big-endian) value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    /// Property name.
    pub name: &'a str,
    /// Raw value bytes.
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// The value as one string: exactly one NUL, at the end, and UTF-8 before it.
    pub fn as_str(&self) -> Option<&'a str> {
        let (last, body) = self.value.split_last()?;
        if *last != 0 || body.contains(&0) {
            return None;
        }
        core::str::from_utf8(body).ok()
    }

    /// The value as a string list (`"a\0b\0"`); `None` unless NUL-terminated and UTF-8.
    /// An empty value is an empty list.
    pub fn as_str_list(&self) -> Option<StrList<'a>> {
        if let Some(last) = self.value.last() {
            if *last != 0 {
                return None;
            }
        }
        let s = core::str::from_utf8(self.value).ok()?;
        Some(StrList { rest: s })
    }

    /// The value as one 32-bit cell.
    pub fn as_u32(&self) -> Option<u32> {
        let b: [u8; 4] = self.value.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// The value as one or two cells (`<u32>` or `<u64>`), zero-extended.
    pub fn as_u32_or_u64(&self) -> Option<u64> {
        match self.value.len() {
            4 => self.as_u32().map(u64::from),
            8 => {
                let b: [u8; 8] = self.value.try_into().ok()?;
                Some(u64::from_be_bytes(b))
            }
            _ => None,
        }
    }

    /// The value as a list of 32-bit cells; `None` if its length is not a multiple of 4.
    pub fn cells(&self) -> Option<Cells<'a>> {
        if !self.value.len().is_multiple_of(4) {
            return None;
        }
        Some(Cells { rest: self.value })
    }
}

/// Iterator over the strings of a string-list property.
#[derive(Clone, Debug)]
pub struct StrList<'a> {
    rest: &'a str,
}

impl<'a> Iterator for StrList<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.split_once('\0') {
            Some((s, rest)) => {
                self.rest = rest;
                Some(s)
            }
            None => {
                let s = self.rest;
                self.rest = "";
                Some(s)
            }
        }
    }
}

/// Iterator over the big-endian 32-bit cells of a property.
#[derive(Clone, Debug)]
pub struct Cells<'a> {
    rest: &'a [u8],
}

impl Cells<'_> {
    /// Cells still to come.
    pub fn remaining(&self) -> usize {
        self.rest.len() / 4
    }

    /// Reads a number made of `n` cells (0, 1 or 2); `None` if `n > 2` or the
    /// property has too few cells left.
    pub fn read(&mut self, n: u32) -> Option<u64> {
        if n > 2 {
            return None;
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 32) | u64::from(self.next()?);
        }
        Some(v)
    }
}

impl Iterator for Cells<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let (head, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        Some(u32::from_be_bytes(*head))
    }
}

#[derive(Clone, Copy, Debug)]
struct NodeData<'a> {
    name: &'a str,
    parent: Option<usize>,
    /// One past the index of the node's last descendant (nodes are in pre-order).
    end: usize,
    /// This node's properties: `props[first_prop..end_prop]`.
    first_prop: usize,
    end_prop: usize,
}

#[derive(Clone, Copy, Debug)]
struct PropData<'a> {
    node: usize,
    prop: Property<'a>,
}

/// A checked, indexed device tree borrowing from its blob.
#[derive(Clone, Debug)]
pub struct Dtb<'a> {
    nodes: Vec<NodeData<'a>>,
    props: Vec<PropData<'a>>,
    /// `(phandle, node index)`, sorted by phandle.
    phandles: Vec<(u32, usize)>,
    mem_reserve: Vec<MemReserve>,
    boot_cpuid_phys: u32,
}

fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn be64(bytes: &[u8], off: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// A NUL-terminated UTF-8 string at the start of `bytes` (without the NUL).
fn cstr(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0)?;
    core::str::from_utf8(bytes.get(..end)?).ok()
}

fn block(data: &[u8], off: u32, size: u32) -> Result<&[u8], DtbError> {
    let start = off as usize;
    let end = start
        .checked_add(size as usize)
        .ok_or(DtbError::BlockOutOfBounds)?;
    data.get(start..end).ok_or(DtbError::BlockOutOfBounds)
}

impl<'a> Dtb<'a> {
    /// Checks and indexes a blob. `bytes` may be longer than the header's
    /// `totalsize`; bytes past it are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DtbError> {
        let hdr = |i: usize| be32(bytes, i * 4).ok_or(DtbError::TruncatedHeader);
        if bytes.len() < FDT_HEADER_SIZE {
            return Err(DtbError::TruncatedHeader);
        }
        if hdr(0)? != FDT_MAGIC {
            return Err(DtbError::BadMagic);
        }
        let totalsize = hdr(1)? as usize;
        let off_dt_struct = hdr(2)?;
        let off_dt_strings = hdr(3)?;
        let off_mem_rsvmap = hdr(4)?;
        let version = hdr(5)?;
        let last_comp_version = hdr(6)?;
        let boot_cpuid_phys = hdr(7)?;
        let size_dt_strings = hdr(8)?;
        let size_dt_struct = hdr(9)?;
        if totalsize < FDT_HEADER_SIZE {
            return Err(DtbError::BadTotalSize);
        }
        let data = bytes.get(..totalsize).ok_or(DtbError::BadTotalSize)?;
        if version < 17 || last_comp_version > 17 {
            return Err(DtbError::UnsupportedVersion);
        }
        if !off_dt_struct.is_multiple_of(4) || !off_mem_rsvmap.is_multiple_of(8) {
            return Err(DtbError::Misaligned);
        }
        let structs = block(data, off_dt_struct, size_dt_struct)?;
        let strings = block(data, off_dt_strings, size_dt_strings)?;
        let mem_reserve = Self::parse_mem_reserve(data, off_mem_rsvmap as usize)?;

        let mut dtb = Dtb {
            nodes: Vec::new(),
            props: Vec::new(),
            phandles: Vec::new(),
            mem_reserve,
            boot_cpuid_phys,
        };
        dtb.parse_structure(structs, strings)?;
        Ok(dtb)
    }

    fn parse_mem_reserve(data: &[u8], off: usize) -> Result<Vec<MemReserve>, DtbError> {
        if off < FDT_HEADER_SIZE || off > data.len() {
            return Err(DtbError::BlockOutOfBounds);
        }
        let mut out = Vec::new();
        let mut pos = off;
        loop {
            let address = be64(data, pos).ok_or(DtbError::UnterminatedMemReserve)?;
            let size = be64(data, pos + 8).ok_or(DtbError::UnterminatedMemReserve)?;
            if address == 0 && size == 0 {
                return Ok(out);
            }
            out.push(MemReserve { address, size });
            pos += 16;
        }
    }

    fn parse_structure(&mut self, structs: &'a [u8], strings: &'a [u8]) -> Result<(), DtbError> {
        let mut stack: Vec<usize> = Vec::new();
        let mut root_closed = false;
        let mut pos = 0usize;
        loop {
            let token = be32(structs, pos).ok_or(DtbError::Truncated)?;
            pos += 4;
            match token {
                FDT_BEGIN_NODE => {
                    if root_closed {
                        return Err(DtbError::MultipleRoots);
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(DtbError::TooDeep);
                    }
                    let rest = structs.get(pos..).ok_or(DtbError::Truncated)?;
                    let name = cstr(rest).ok_or(DtbError::BadNodeName)?;
                    pos = align4(pos + name.len() + 1).ok_or(DtbError::Truncated)?;
                    let index = self.nodes.len();
                    self.nodes.push(NodeData {
                        name,
                        parent: stack.last().copied(),
                        end: index + 1,
                        first_prop: 0,
                        end_prop: 0,
                    });
                    stack.push(index);
                }
                FDT_END_NODE => {
                    let index = stack.pop().ok_or(DtbError::Unbalanced)?;
                    let end = self.nodes.len();
                    if let Some(n) = self.nodes.get_mut(index) {
                        n.end = end;
                    }
                    if stack.is_empty() {
                        root_closed = true;
                    }
                }
                FDT_PROP => {
                    let len = be32(structs, pos).ok_or(DtbError::Truncated)? as usize;
                    let nameoff = be32(structs, pos + 4).ok_or(DtbError::Truncated)? as usize;
                    let start = pos + 8;
                    let end = start.checked_add(len).ok_or(DtbError::Truncated)?;
                    let value = structs.get(start..end).ok_or(DtbError::Truncated)?;
                    let name = strings
                        .get(nameoff..)
                        .and_then(cstr)
                        .ok_or(DtbError::BadPropertyName)?;
                    let node = *stack.last().ok_or(DtbError::PropertyOutsideNode)?;
                    self.props.push(PropData {
                        node,
                        prop: Property { name, value },
                    });
                    pos = align4(end).ok_or(DtbError::Truncated)?;
                }
                FDT_NOP => {}
                FDT_END => {
                    if !stack.is_empty() {
                        return Err(DtbError::Unbalanced);
                    }
                    if self.nodes.is_empty() {
                        return Err(DtbError::NoRoot);
                    }
                    break;
                }
                _ => return Err(DtbError::BadToken),
            }
        }

        // Properties normally precede subnodes, but nothing here depends on it:
        // group them by node (stable, so each node keeps its own order).
        self.props.sort_by_key(|p| p.node);
        let mut i = 0;
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.first_prop = i;
            while self.props.get(i).is_some_and(|p| p.node == index) {
                i += 1;
            }
            node.end_prop = i;
        }

        let mut phandles: Vec<(u32, usize)> = self
            .nodes()
            .filter_map(|n| Some((n.phandle()?, n.index)))
            .collect();
        // Stable sort: for a duplicated phandle the first definition wins.
        phandles.sort_by_key(|&(ph, _)| ph);
        phandles.dedup_by_key(|&mut (ph, _)| ph);
        self.phandles = phandles;
        Ok(())
    }

    /// The root node.
    pub fn root(&self) -> Node<'_, 'a> {
        Node {
            dtb: self,
            index: 0,
        }
    }

    /// Every node, depth-first in blob order (the root first).
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_, 'a>> + '_ {
        (0..self.nodes.len()).map(move |index| Node { dtb: self, index })
    }

    /// The node at an absolute path such as `/cpus/cpu@0`. A path component
    /// without a unit address (`memory`) also matches a node that has one
    /// (`memory@80000000`); the first match wins.
    pub fn find_path(&self, path: &str) -> Option<Node<'_, 'a>> {
        let rest = path.strip_prefix('/')?;
        let mut node = self.root();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            node = node.children().find(|c| c.name_matches(comp))?;
        }
        Some(node)
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Option<Node<'_, 'a>> {
        let i = self
            .phandles
            .binary_search_by_key(&phandle, |&(ph, _)| ph)
            .ok()?;
        let &(_, index) = self.phandles.get(i)?;
        Some(Node { dtb: self, index })
    }

    /// Every node whose `compatible` list contains `compat`, in blob order.
    pub fn find_compatible<'s>(
        &'s self,
        compat: &'s str,
    ) -> impl Iterator<Item = Node<'s, 'a>> + 's {
        self.nodes().filter(move |n| n.is_compatible(compat))
    }

    /// The header's memory-reservation entries.
    pub fn mem_reserve(&self) -> &[MemReserve] {
        &self.mem_reserve
    }

    /// The header's `boot_cpuid_phys`.
    pub fn boot_cpuid_phys(&self) -> u32 {
        self.boot_cpuid_phys
    }
}

/// A node of a [`Dtb`].
#[derive(Clone, Copy)]
pub struct Node<'d, 'a> {
    dtb: &'d Dtb<'a>,
    index: usize,
}

impl fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("name", &self.name()).finish()
    }
}

impl PartialEq for Node<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self.dtb, other.dtb) && self.index == other.index
    }
}

impl<'d, 'a> Node<'d, 'a> {
    fn data(&self) -> Option<&'d NodeData<'a>> {
        self.dtb.nodes.get(self.index)
    }

    /// The node's full name, e.g. `serial@10000000` (empty for the root).
    pub fn name(&self) -> &'a str {
        self.data().map_or("", |d| d.name)
    }

    /// The name without its unit address (`serial`).
    pub fn base_name(&self) -> &'a str {
        let name = self.name();
        name.split_once('@').map_or(name, |(base, _)| base)
    }

    /// The unit address part of the name (`10000000`), if any.
    pub fn unit_address(&self) -> Option<&'a str> {
        self.name().split_once('@').map(|(_, addr)| addr)
    }

    fn name_matches(&self, comp: &str) -> bool {
        if comp.contains('@') {
            self.name() == comp
        } else {
            self.base_name() == comp
        }
    }

    /// The parent node (`None` for the root).
    pub fn parent(&self) -> Option<Node<'d, 'a>> {
        let parent = self.data()?.parent?;
        Some(Node {
            dtb: self.dtb,
            index: parent,
        })
    }

    /// Direct children, in blob order.
    pub fn children(&self) -> impl Iterator<Item = Node<'d, 'a>> + 'd {
        let dtb = self.dtb;
        let end = self.data().map_or(0, |d| d.end);
        let mut next = self.index + 1;
        core::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let index = next;
            next = dtb.nodes.get(index)?.end;
            Some(Node { dtb, index })
        })
    }

    /// All properties, in blob order.
    pub fn properties(&self) -> impl Iterator<Item = Property<'a>> + 'd {
        let (first, end) = self.data().map_or((0, 0), |d| (d.first_prop, d.end_prop));
        self.dtb
            .props
            .get(first..end)
            .unwrap_or_default()
            .iter()
            .map(|p| p.prop)
    }

    /// The first property called `name`.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// Whether the node's `compatible` list contains `compat`.
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.property("compatible")
            .and_then(|p| p.as_str_list())
            .is_some_and(|mut l| l.any(|c| c == compat))
    }

    /// The `device_type` string, if well formed.
    pub fn device_type(&self) -> Option<&'a str> {
        self.property("device_type").and_then(|p| p.as_str())
    }

    /// Whether `status` is absent, `"okay"` or `"ok"` (devicetree spec 2.3.4).
    pub fn is_enabled(&self) -> bool {
        match self.property("status") {
            None => true,
            Some(p) => matches!(p.as_str(), Some("okay") | Some("ok")),
        }
    }

    /// The node's `phandle`, if it has a valid one.
    pub fn phandle(&self) -> Option<u32> {
        self.property("phandle")
            .or_else(|| self.property("linux,phandle"))
            .and_then(|p| p.as_u32())
            .filter(|&ph| ph != 0 && ph != u32::MAX)
    }
}
