//! Random numbers from the kernel, for identities that must not collide (a client's id).

/// 128 random bits from the kernel's generator.
///
/// `getrandom(buf, 16, 0)`: blocks only until the generator is first seeded at boot, and a
/// read of 16 bytes is never cut short. See [getrandom(2)].
///
/// [getrandom(2)]: https://man7.org/linux/man-pages/man2/getrandom.2.html
pub fn random_u128() -> std::io::Result<u128> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    // Signals can interrupt a read before anything is written (EINTR): go on until all 16
    // bytes are there.
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u128::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_draws_differ() {
        assert_ne!(super::random_u128().unwrap(), super::random_u128().unwrap());
    }
}
