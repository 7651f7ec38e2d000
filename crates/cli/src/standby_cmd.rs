//! `bookstore standby`: follow a replicated market's stream into a store of its own (state
//! `standby`: `inspect` reads it, clients wait), and take over when the market's lease lapses:
//! take the lease, apply the whole stream, fence it, and serve under its own name. The life it
//! shares with `market --durability replicated` is in `replicated.rs`.

use crate::args::StandbyArgs;
use crate::exit::Exit;
use crate::replicated::{self, Replicated, Role};

pub fn run(args: StandbyArgs) -> Exit {
    let run = replicated::run(Replicated {
        role: Role::Standby,
        program: "standby",
        name: &args.store.name,
        serve: &args.serve,
        stream: &args.stream,
        fresh: args.fresh,
    });
    match run {
        Ok(exit) | Err(exit) => exit,
    }
}
