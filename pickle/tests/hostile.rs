//! Hostile pickles: files that reach for code, `__reduce__` tricks, truncated and bit-flipped real
//! models, size bombs, deep nesting and memo abuse. Each must be a clear error (or, for mutated real
//! files, any `Ok`/`Err`), never a panic, an abort, unbounded work, or a side effect.
//!
//! The Python-made hostile files are in `tests/fixtures/hostile_*`, written by
//! `make_pickle_fixtures.py`; loaded by Python they would run `touch /tmp/ferroserve-hostile-marker`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ferroserve_pickle::{self as pickle, Error, Limit, Limits, Value};

const MARKER: &str = "/tmp/ferroserve-hostile-marker";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn load(bytes: &[u8]) -> Result<Value, Error> {
    pickle::loads(bytes, &Limits::default())
}

fn load_with(bytes: &[u8], limits: &Limits) -> Result<Value, Error> {
    pickle::loads(bytes, limits)
}

/// The error message, failing the test if the load succeeded.
fn err(bytes: &[u8]) -> String {
    err_with(bytes, &Limits::default())
}

fn err_with(bytes: &[u8], limits: &Limits) -> String {
    match load_with(bytes, limits) {
        Ok(v) => panic!("expected an error, got {}", v.type_name()),
        Err(e) => e.to_string(),
    }
}

/// The `module.name` an [`Error::UnsupportedClass`] names, failing the test on anything else.
fn unsupported_class(result: Result<Value, Error>) -> String {
    match result {
        Err(e @ Error::UnsupportedClass { .. }) => e.class_name().unwrap(),
        Err(other) => panic!("expected an unsupported class, got: {other}"),
        Ok(v) => panic!("expected an unsupported class, got {}", v.type_name()),
    }
}

/// Runs a load that must neither panic nor abort, on a thread with a small stack (so that deep
/// recursion anywhere would show up as a crash here rather than in production).
/// Returns the loaded value's type name, or the error message.
fn survive(bytes: Vec<u8>, limits: Limits) -> Result<String, String> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || load_with(&bytes, &limits).map(|v| v.type_name()).map_err(|e| e.to_string()))
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("the load panicked"))
}

fn assert_no_side_effect() {
    assert!(!Path::new(MARKER).exists(), "{MARKER} exists: something ran a command");
}

// --- Reaching for code.

#[test]
fn python_made_pickles_that_run_commands_are_refused() {
    let cases = [
        ("hostile_os_system_p0.pkl", "posix.system"),
        ("hostile_os_system_p2.pkl", "posix.system"),
        ("hostile_os_system_p4.pkl", "posix.system"),
        ("hostile_os_system_p5.pkl", "posix.system"),
        ("hostile_eval.pkl", "builtins.eval"),
        ("hostile_exec.pkl", "__builtin__.exec"),
        ("hostile_subprocess.pkl", "subprocess.Popen"),
        ("hostile_getattr.pkl", "builtins.getattr"),
        // A REDUCE of os.system in the state of a real fitted StandardScaler, after its arrays …
        ("hostile_nested.joblib", "posix.system"),
        // … and inside an object array, which joblib writes as a nested pickle.
        ("hostile_in_object_array.joblib", "posix.system"),
    ];
    for (file, class) in cases {
        let result = pickle::load_reader(std::fs::File::open(fixture(file)).unwrap(), &Limits::default());
        let e = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert_eq!(unsupported_class(result), class, "{file}");
        assert!(e.starts_with(&format!("unsupported class {class} (at byte ")), "{file}: {e}");
    }
    assert_no_side_effect();
}

/// `module\nname\n` as GLOBAL, STACK_GLOBAL, INST and OBJ spell it, each followed by a call.
fn spellings(module: &str, name: &str, arg: &str) -> Vec<Vec<u8>> {
    let short = |s: &str| [&[0x8c, s.len() as u8][..], s.as_bytes()].concat();
    let global = format!("c{module}\n{name}\n").into_bytes();
    let stack_global = [short(module), short(name), vec![0x93]].concat();
    let unicode_arg = format!("V{arg}\n").into_bytes();
    vec![
        // protocol 0: GLOBAL, (arg) TUPLE, REDUCE
        [&global[..], b"(", &unicode_arg, b"tR."].concat(),
        // protocol 4: STACK_GLOBAL, arg TUPLE1, REDUCE
        [&b"\x80\x04"[..], &stack_global, &short(arg), b"\x85R."].concat(),
        // NEWOBJ and NEWOBJ_EX
        [&stack_global[..], &short(arg), b"\x85\x81."].concat(),
        [&stack_global[..], &short(arg), b"\x85}\x92."].concat(),
        // INST module name, with the argument above a MARK
        [&b"("[..], &unicode_arg, format!("i{module}\n{name}\n.").as_bytes()].concat(),
        // OBJ: MARK class arg OBJ
        [&b"("[..], &global, &unicode_arg, b"o."].concat(),
        // Just naming it, without a call, is refused too.
        [&global[..], b"."].concat(),
    ]
}

#[test]
fn dangerous_callables_in_every_spelling_are_refused() {
    let command = format!("touch {MARKER}");
    let targets = [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("subprocess", "Popen"),
        ("subprocess", "check_output"),
        ("os", "popen"),
        ("pty", "spawn"),
        ("importlib", "import_module"),
        ("pickle", "loads"),
        ("numpy", "load"),
        ("joblib", "load"),
        ("sklearn.utils._testing", "assert_run_python_script_without_output"),
        // A nested attribute path, as protocol 4 allows.
        ("builtins", "object.__subclasses__"),
        ("numpy.core.multiarray", "_reconstruct.__globals__"),
    ];
    for (module, name) in targets {
        for (i, bytes) in spellings(module, name, &command).iter().enumerate() {
            assert_eq!(unsupported_class(load(bytes)), format!("{module}.{name}"), "spelling {i} of {module}.{name}");
        }
    }
    assert_no_side_effect();
}

#[test]
fn a_reduce_hidden_inside_a_real_estimator_is_refused() {
    // Pipeline() whose state holds {"steps": [posix.system("touch …")]}.
    let cmd = format!("touch {MARKER}");
    let bytes = [
        &b"\x80\x04\x8c\x10sklearn.pipeline\x8c\x08Pipeline\x93)\x81}\x8c\x05steps]("[..],
        b"\x8c\x05posix\x8c\x06system\x93",
        &[0x8c, cmd.len() as u8],
        cmd.as_bytes(),
        b"\x85Resb.",
    ]
    .concat();
    assert_eq!(unsupported_class(load(&bytes)), "posix.system");
    // An allowlisted name cannot be used to reach a function: calling a class only records it.
    let v = load(b"\x8c\x05numpy\x8c\x07ndarray\x93\x8c\x04evil\x85R.").unwrap();
    assert!(v.is_instance("numpy", "ndarray"));
    // REDUCE of something that is not a global (a str naming a function) is not a call either.
    assert!(err(b"\x8c\x09os.system\x8c\x02id\x85R.").contains("REDUCE of a str"));
    assert_no_side_effect();
}

#[test]
fn refused_features_reach_outside_the_pickle() {
    assert!(err(b"Pfile:/etc/passwd\n.").contains("persistent IDs"));
    assert!(err(b"\x82\x01.").contains("extension codes"));
    assert!(err(b"\x80\x05\x97.").contains("out-of-band"));
    assert!(err(b"cjoblib.numpy_pickle\nNDArrayWrapper\n.").contains("old joblib format"));
}

// --- Truncated and corrupted real files.

const REAL_FILES: [&str; 6] = [
    "tree_np2_p5.pkl",
    "tree_np1_p4.pkl",
    "tree_np2.joblib",
    "arrays_np2.joblib",
    "arrays_np2_p0.pkl",
    "gb_np2_zlib.joblib",
];

#[test]
fn every_prefix_of_a_real_file_is_an_error() {
    for file in REAL_FILES {
        let bytes = read(file);
        assert!(load(&bytes).is_ok(), "{file} loads whole");
        for len in 0..bytes.len() {
            let outcome = catch_unwind(AssertUnwindSafe(|| load(&bytes[..len])));
            match outcome {
                Ok(Err(Error::Truncated { detail, .. })) => assert!(!detail.is_empty()),
                // Cut inside zlib data (gb_np2_zlib.joblib).
                Ok(Err(Error::Compression { .. })) => {}
                Ok(Err(other)) => panic!("{file}[..{len}]: unexpected error kind: {other:?}"),
                Ok(Ok(_)) => panic!("{file}[..{len}] loaded although truncated"),
                Err(_) => panic!("{file}[..{len}] panicked"),
            }
        }
    }
}

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn bit_flipped_real_files_never_panic() {
    let mut rng = Rng(0x5EED_F00D);
    let (mut ok, mut failed) = (0, 0);
    for file in REAL_FILES {
        let original = read(file);
        for round in 0..1500 {
            let mut bytes = original.clone();
            match round % 3 {
                // One flipped bit.
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                // One byte replaced (lengths, opcodes, memo indices become anything).
                1 => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
                // A few bits at once.
                _ => {
                    for _ in 0..4 {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
            }
            match catch_unwind(AssertUnwindSafe(|| load(&bytes))) {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(_)) => failed += 1,
                Err(_) => panic!("{file}, round {round}: a mutated file panicked; bytes: {bytes:?}"),
            }
        }
    }
    // Both outcomes happen: flips in array data load, flips in opcodes do not.
    assert!(ok > 100 && failed > 100, "{ok} loaded, {failed} failed");
    assert_no_side_effect();
}

// --- Size bombs: declared sizes are checked against the data before anything is allocated.

#[test]
fn huge_declared_lengths_are_not_allocated() {
    for (op, len) in [(0x8du8, 8), (0x8e, 8), (0x96, 8), (b'X', 4), (b'B', 4), (b'T', 4)] {
        let bytes = [&[op][..], &vec![0xff; len][..], b"."].concat();
        let e = err(&bytes);
        assert!(e.contains("truncated") || e.contains("negative length"), "{op:#x}: {e}");
    }
    // LONG4 declaring 2 GiB, and a decimal LONG of 100,000 digits.
    assert!(err(b"\x8b\xff\xff\xff\x7f.").contains("max_long_bytes"));
    assert!(err(&[&b"L"[..], &vec![b'9'; 100_000], b"\n."].concat()).contains("max_long_bytes"));
    // A FRAME claiming more than the file holds.
    assert!(err(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x10\x00N.").contains("FRAME"));
}

#[test]
fn huge_declared_array_shapes_are_refused() {
    let dtype_f8 = b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f8\x89\x88\x87R";
    // _frombuffer(b"12345678", float64, (2**40,), "C")
    let frombuffer = [
        &b"\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93(C\x0812345678"[..],
        dtype_f8,
        b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85\x8c\x01Ct\x94R.",
    ]
    .concat();
    assert!(err(&frombuffer).contains("needs 8796093022208 bytes but has 8"));
    // _reconstruct + BUILD with a shape whose element count overflows.
    let reconstruct = [
        &b"\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93\x8c\x05numpy\x8c\x07ndarray\x93K\x00\x85C\x01b\x87R"
            [..],
        b"(K\x01\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x86",
        dtype_f8,
        b"\x89C\x00tb.",
    ]
    .concat();
    assert!(err(&reconstruct).contains("overflows"));
    // A joblib NumpyArrayWrapper announcing 2**40 float64 elements, followed by 8 bytes.
    let wrapper = [
        &b"\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}(\
           \x8c\x05shape\x8a\x06\x00\x00\x00\x00\x00\x01\x85\x8c\x05order\x8c\x01C\x8c\x05dtype"[..],
        dtype_f8,
        b"ub12345678.",
    ]
    .concat();
    assert!(err(&wrapper).contains("truncated pickle: the joblib array's data needs 8796093022208 bytes"));
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_zlib_bomb_stops_at_the_limit() {
    // 64 MiB of zeros in about 64 KB, against a 1 MiB limit.
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&chunk).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 100_000);
    let limits = Limits { max_decompressed_bytes: 1 << 20, ..Limits::default() };
    assert!(err_with(&bomb, &limits).contains("max_decompressed_bytes"));
    // Read from a stream, the bomb stops at the limit too, and so does a compressed file that is itself
    // over the file limit (counted as it streams through the decoder).
    let e = pickle::load_reader(bomb.as_slice(), &limits).unwrap_err().to_string();
    assert!(e.contains("max_decompressed_bytes"), "{e}");
    let e = pickle::load_reader(bomb.as_slice(), &Limits { max_file_bytes: 1000, ..Limits::default() }).unwrap_err();
    assert!(e.to_string().contains("max_file_bytes"), "{e}");
    // The same container holding a real pickle loads.
    assert!(load(&zlib(&read("tree_np2_p5.pkl"))).is_ok());
}

#[test]
fn large_files_are_refused_before_reading() {
    let limits = Limits { max_file_bytes: 100, ..Limits::default() };
    assert!(err_with(&read("tree_np2_p5.pkl"), &limits).contains("max_file_bytes"));
    let e = pickle::load_reader(std::fs::File::open(fixture("tree_np2_p5.pkl")).unwrap(), &limits).unwrap_err();
    assert!(e.to_string().contains("max_file_bytes"), "{e}");
}

// --- Deep nesting.

#[test]
fn deep_mark_nesting_is_refused() {
    let bytes = [vec![b'('; 100_000], vec![b'.']].concat();
    assert!(survive(bytes, Limits::default()).unwrap_err().contains("MARKs nest deeper than the limit max_depth"));
}

#[test]
fn deeply_nested_lists_are_refused_and_torn_down_without_recursion() {
    // 500,000 lists on the stack, then each appended into the one below: a list nested 500,000 deep.
    let n = 500_000;
    let bytes = [vec![b']'; n], vec![b'a'; n - 1], vec![b'.']].concat();
    let e = survive(bytes, Limits::default()).unwrap_err();
    assert!(e.contains("nests deeper than the limit max_depth"), "{e}");
    // The same depth through the memo, with a stack never more than two deep:
    // repeat { EMPTY_LIST, LONG_BINGET 0, APPEND, LONG_BINPUT 0, POP }.
    let mut bytes = b"]r\x00\x00\x00\x00".to_vec();
    for _ in 0..n {
        bytes.extend_from_slice(b"]j\x00\x00\x00\x00ar\x00\x00\x00\x000");
    }
    bytes.extend_from_slice(b"j\x00\x00\x00\x00.");
    assert!(survive(bytes.clone(), Limits::default()).unwrap_err().contains("max_depth"));
    // Built and then thrown away (POP, then STOP on something else) is fine: nothing deep is returned.
    bytes.truncate(bytes.len() - 6);
    bytes.extend_from_slice(b"N.");
    assert_eq!(survive(bytes, Limits::default()), Ok("None".to_owned()));
}

#[test]
fn reference_cycles_are_refused() {
    // l = []; l.append(l)
    assert!(err(b"]\x94h\x00a.").contains("reference cycle"));
    // d = {}; d["self"] = [d]
    assert!(err(b"}\x94\x8c\x04self]h\x00as.").contains("reference cycle"));
}

#[test]
fn billion_laughs_is_refused() {
    // Each level is a list holding the level below 10 times: 30 levels = 10^30 as a tree.
    let mut bytes = b"]r\x00\x00\x00\x00".to_vec();
    for _ in 0..30 {
        bytes.extend_from_slice(b"0(");
        bytes.extend(std::iter::repeat_n(&b"j\x00\x00\x00\x00"[..], 10).flatten());
        bytes.extend_from_slice(b"lr\x00\x00\x00\x00");
    }
    bytes.push(b'.');
    assert!(survive(bytes, Limits::default()).unwrap_err().contains("expands to more than"));
}

// --- Memo abuse.

#[test]
fn memo_abuse_is_refused() {
    assert!(err(b"h\x05.").contains("the memo has no entry 5"));
    assert!(err(b"j\xff\xff\xff\xff.").contains("the memo has no entry 4294967295"));
    assert!(err(b"g99999999999999999999999\n.").contains("not a memo index"));
    assert!(err(b"Nr\xff\xff\xff\xff.").contains("over the limit max_memo"));
    assert!(err(b"Np18446744073709551615\n.").contains("over the limit max_memo"));
    // Many entries, against a small limit.
    let limits = Limits { max_memo: 1000, ..Limits::default() };
    let bytes = [b"N".to_vec(), b"\x94".repeat(1001), b".".to_vec()].concat();
    assert!(err_with(&bytes, &limits).contains("max_memo = 1000"));
}

// --- Every limit is named when it is hit.

#[test]
fn each_limit_is_named() {
    let tree = read("tree_np2_p5.pkl");
    let cases: [(Limits, &[u8], Limit, &str); 6] = [
        (Limits { max_ops: 50, ..Limits::default() }, &tree, Limit::Ops, "max_ops = 50"),
        (Limits { max_alloc_bytes: 1000, ..Limits::default() }, &tree, Limit::AllocBytes, "max_alloc_bytes = 1000"),
        (Limits { max_stack: 3, ..Limits::default() }, b"NNNN.", Limit::Stack, "max_stack = 3"),
        (Limits { max_depth: 2, ..Limits::default() }, b"(((N.", Limit::Depth, "max_depth = 2"),
        (
            Limits { max_collection_len: 2, ..Limits::default() },
            b"](NNNe.",
            Limit::CollectionLen,
            "max_collection_len = 2",
        ),
        (
            Limits { max_long_bytes: 2, ..Limits::default() },
            b"\x8a\x03\x01\x02\x03.",
            Limit::LongBytes,
            "max_long_bytes = 2",
        ),
    ];
    for (limits, bytes, limit, name) in cases {
        match load_with(bytes, &limits) {
            Err(e @ Error::LimitExceeded { what, limit: value, .. }) => {
                assert_eq!((what, value), (limit, limit.value(&limits)), "{name}: {e}");
                assert!(e.to_string().contains(name), "{name}: {e}");
            }
            other => panic!("{name}: expected the limit, got {other:?}"),
        }
    }
    // A list of a million elements, pushed with one APPENDS, against a collection limit.
    let limits = Limits { max_collection_len: 1000, ..Limits::default() };
    let bytes = [&b"]("[..], &b"N".repeat(100_000), b"e."].concat();
    assert!(err_with(&bytes, &limits).contains("max_collection_len = 1000"));
    // The default limits load every real fixture.
    assert!(load(&tree).is_ok());
}

#[test]
fn the_allowlist_is_a_reviewed_table() {
    let names = pickle::allowlist::names();
    assert_eq!(names.len(), pickle::allowlist::len());
    for needed in [
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._tree.Tree",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray._reconstruct",
        "joblib.numpy_pickle.NumpyArrayWrapper",
    ] {
        assert!(names.iter().any(|n| n == needed), "{needed}");
    }
    for name in &names {
        assert!(!name.starts_with("os.") && !name.starts_with("subprocess.") && !name.contains("eval"), "{name}");
    }
}
