//! Bounds on the work one pickle may make the interpreter do.
//!
//! A pickle is a program: without bounds a 100-byte file can ask for a terabyte string, a list
//! nested a million deep, or a billion opcodes. Every limit here is checked before the memory is
//! allocated or the work is done, and a file over one fails with
//! [`Error::LimitExceeded`](crate::Error::LimitExceeded) saying which [`Limit`] and naming it in the
//! message (`over the limit max_memo = 8388608 …`), never with an abort.

use std::fmt;

/// Limits on one load. [`Limits::default`] is the production setting.
///
/// The defaults fit a 100-tree RandomForest or a 1000-stage GradientBoosting model of a few hundred
/// megabytes with room to spare, while keeping the worst a hostile file can do to a few GiB of memory
/// and a few seconds of CPU on one core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Size of the file as stored (compressed or not). Default 1 GiB.
    pub max_file_bytes: u64,
    /// Size of the pickle stream after zlib/gzip decompression: the zip-bomb bound. Default 2 GiB.
    pub max_decompressed_bytes: u64,
    /// Bytes the interpreter may allocate in total: strings, bytes, array data (copies count
    /// again), and an estimate for containers and their slots. Default 3 GiB.
    pub max_alloc_bytes: u64,
    /// Opcodes executed plus elements copied or compared (the time bound). Default 100 million.
    pub max_ops: u64,
    /// Entries in the memo, and the largest memo index. Default 8 Mi.
    pub max_memo: usize,
    /// Values on the interpreter's stack at once. Default 1 Mi.
    pub max_stack: usize,
    /// Open `MARK`s, nesting of the data built (lists in lists, objects in dicts …) and of
    /// structured dtypes. Real scikit-learn models nest about 15 deep. Default 256.
    pub max_depth: usize,
    /// Elements of one list, tuple, dict, set or object array, and of any array whose elements take
    /// no bytes; also the containers the result holds when a shared one is counted once per
    /// reference (what walking it as a tree visits: this refuses "billion laughs" graphs). Default 16 Mi.
    pub max_collection_len: usize,
    /// Bytes of one integer (`LONG1`, `LONG4`, or a decimal `INT`/`LONG`). Default 4096.
    pub max_long_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        Limits {
            max_file_bytes: GIB,
            max_decompressed_bytes: 2 * GIB,
            max_alloc_bytes: 3 * GIB,
            max_ops: 100_000_000,
            max_memo: 1 << 23,
            max_stack: 1 << 20,
            max_depth: 256,
            max_collection_len: 1 << 24,
            max_long_bytes: 4096,
        }
    }
}

/// One of the [`Limits`], as [`Error::LimitExceeded`](crate::Error::LimitExceeded) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_file_bytes`].
    FileBytes,
    /// [`Limits::max_decompressed_bytes`].
    DecompressedBytes,
    /// [`Limits::max_alloc_bytes`].
    AllocBytes,
    /// [`Limits::max_ops`].
    Ops,
    /// [`Limits::max_memo`].
    Memo,
    /// [`Limits::max_stack`].
    Stack,
    /// [`Limits::max_depth`].
    Depth,
    /// [`Limits::max_collection_len`].
    CollectionLen,
    /// [`Limits::max_long_bytes`].
    LongBytes,
}

impl Limit {
    /// The field's name in [`Limits`] (`max_memo`), as messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::FileBytes => "max_file_bytes",
            Limit::DecompressedBytes => "max_decompressed_bytes",
            Limit::AllocBytes => "max_alloc_bytes",
            Limit::Ops => "max_ops",
            Limit::Memo => "max_memo",
            Limit::Stack => "max_stack",
            Limit::Depth => "max_depth",
            Limit::CollectionLen => "max_collection_len",
            Limit::LongBytes => "max_long_bytes",
        }
    }

    /// Its value in `limits`.
    pub fn value(self, limits: &Limits) -> u64 {
        let size = |n: usize| n as u64;
        match self {
            Limit::FileBytes => limits.max_file_bytes,
            Limit::DecompressedBytes => limits.max_decompressed_bytes,
            Limit::AllocBytes => limits.max_alloc_bytes,
            Limit::Ops => limits.max_ops,
            Limit::Memo => size(limits.max_memo),
            Limit::Stack => size(limits.max_stack),
            Limit::Depth => size(limits.max_depth),
            Limit::CollectionLen => size(limits.max_collection_len),
            Limit::LongBytes => size(limits.max_long_bytes),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
