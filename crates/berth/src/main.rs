//! The `berth` binary: `berth shim` (internal: supervises one task process) or the CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The exec driver re-executes this binary as `berth shim …` to supervise a
    // task; that path must not start a runtime or parse the user-facing CLI.
    if args.get(1).is_some_and(|a| a == "shim") {
        let code = agent::shim_main(args[2..].to_vec());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    berth::cli::main()
}
