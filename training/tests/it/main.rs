//! Integration tests of `ferroserve-train`: the library end to end, and the binary as a user runs it.
//!
//! One test binary (so one link), a module per theme.

// Helpers outside #[test] functions are test code too (clippy's allow-unwrap-in-tests misses them).
#![allow(clippy::unwrap_used)]

mod cli;
mod gate;
mod lstm;
mod prometheus;
mod rollout;
mod train;

use std::path::Path;
use std::process::{Command, Output};

/// The `SOURCE_DATE_EPOCH` the binary runs with here: fixed `created_at`s, so fixed names and bytes.
pub const EPOCH: &str = "1768176000";

/// Runs `ferroserve-train` in `dir` with [`EPOCH`].
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferroserve-train"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

/// Every file under `dir`, as (relative path, bytes), sorted.
pub fn tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The names in `dir`, sorted (hidden ones included).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}
