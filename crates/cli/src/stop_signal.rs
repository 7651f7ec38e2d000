//! Stopping on a signal: the handlers only set a flag (signal-hook), and the subcommand's loop
//! checks it between steps, so nothing runs in a handler but one atomic store.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A flag that any of `signals` sets.
pub fn stop_flag(signals: &[i32]) -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for &signal in signals {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}
