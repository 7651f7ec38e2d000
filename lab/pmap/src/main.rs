//! `pmap`: report the memory map of a process, as procps-ng 4.0.2's pmap does.

fn main() {
    std::process::exit(pmap::main_with(std::env::args_os().collect()));
}
