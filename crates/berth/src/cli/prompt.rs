//! Questions to the user at a terminal: a line, a password without echo, a
//! yes/no; and reading a secret from stdin (`--password-stdin`). A secret
//! never comes from a flag's value, which `ps` and shell history would keep.

use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Write};

/// Whether questions can be asked: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    if n == 0 {
        bail!("no answer (end of input)");
    }
    Ok(trim_newline(line))
}

fn trim_newline(mut line: String) -> String {
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Asks `question` and reads a line (echoed).
pub fn ask(question: &str) -> anyhow::Result<String> {
    if !interactive() {
        bail!("cannot ask {question:?}: stdin is not a terminal");
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    read_line()
}

/// Asks `question`; yes only for `y` or `yes`.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    let answer = ask(&format!("{question} [y/N] "))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Asks for a password at the terminal with echo off (restored even when
/// reading fails).
pub fn password(question: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    if !interactive() {
        bail!("cannot ask for a password: stdin is not a terminal (use --password-stdin)");
    }
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // Keep echoing the newline, so the next output starts on its own line.
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).context("turning off the terminal's echo")?;
    let line = read_line();
    let restored = tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    let line = line?;
    restored.context("restoring the terminal's echo")?;
    Ok(line)
}

/// Asks for a new password twice, until both agree (three tries).
pub fn new_password(question: &str) -> anyhow::Result<String> {
    for _ in 0..3 {
        let first = password(question)?;
        let again = password("Retype it: ")?;
        if first == again {
            return Ok(first);
        }
        eprintln!("The passwords differ; try again.");
    }
    bail!("the passwords differed three times")
}

/// The first `n` lines of stdin (`--password-stdin`), without their line
/// endings; fewer lines than `n` is an error naming `what`.
pub fn stdin_lines(n: usize, what: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::with_capacity(n);
    let mut input = std::io::stdin().lock();
    for _ in 0..n {
        let mut line = String::new();
        let read = input.read_line(&mut line).context("reading stdin")?;
        if read == 0 {
            bail!("stdin ended before {what}");
        }
        lines.push(trim_newline(line));
    }
    Ok(lines)
}

/// The first line of stdin: a secret given with `--…-stdin`.
pub fn stdin_secret(what: &str) -> anyhow::Result<String> {
    let line = stdin_lines(1, what)?.remove(0);
    if line.is_empty() {
        bail!("{what} read from stdin is empty");
    }
    Ok(line)
}
