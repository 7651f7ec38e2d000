//! A child process that is killed and reaped on every way out, panics included.

use std::process::Child;

pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
