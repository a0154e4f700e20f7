//! `estafette-load`: load generator, smart SMTP sink and scenario runner.
//!
//! Not built yet (issue 6); until then `bench/scripts/relay-vs-postfix.sh`
//! drives load with Postfix's smtp-source. This binary says so instead of
//! pretending to work.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eprintln!(
        "estafette-load is not implemented yet (issue 6).\n\
         For side-by-side figures today: bench/scripts/relay-vs-postfix.sh"
    );
    std::process::ExitCode::from(2)
}
