//! The binary's exit codes and messages for configurations it cannot serve.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferroserve"))
        .args(args)
        .env_remove("MODEL_REPOSITORY")
        .env_remove("MODEL_DIR")
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn a_missing_model_dir_exits_1_with_a_clear_message() {
    let out = run(&["--model_dir", "/nonexistent/ferroserve-models", "--http_port", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--model_dir /nonexistent/ferroserve-models: No such file or directory"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_flags_exit_non_zero_naming_the_flag() {
    let out = run(&["--http_port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http_port: must be between 1 and 65535"));
    // clap's own usage errors exit 2.
    let out = run(&["--log_format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_names_the_validate_sub_command_and_its_usage() {
    let out = run(&["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("ferroserve validate --url URL --model NAME"), "{stdout}");
    let out = run(&["validate", "--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("Usage: ferroserve validate"), "{stdout}");
}
