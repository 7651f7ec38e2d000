//! The `bookstore` command. Everything it does lives in the library's `cli` module.

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOOKSTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = bookstore::cli::Cli::parse();
    std::process::ExitCode::from(bookstore::cli::run(cli) as u8)
}

/// Under `--cfg loom` only the lock-free building blocks are compiled (for the models); cargo
/// still builds the binary for the test targets, so it gets an entry point that says so.
#[cfg(loom)]
fn main() {
    eprintln!("this build is for loom models only (RUSTFLAGS=\"--cfg loom\"); rebuild without it");
    std::process::exit(1);
}
