//! Test support: the exec driver's shim as a binary of its own, so the agent
//! crate's tests run shims without the berth binary (which runs `berth shim`).

fn main() {
    std::process::exit(agent::driver::exec::shim_main(
        std::env::args_os().skip(1).collect(),
    ));
}
