// SPDX-License-Identifier: GPL-2.0

//! `hello_rust`: the lab's "hello world" kernel module, in Rust.
//!
//! On load it greets `times` times (a module parameter, 1 to 10, default 1); on unload it says
//! goodbye. `times` shows in `modinfo`, under `/sys/module/hello_rust/parameters/times`, and in
//! the load message. The C twin, `hello_c`, behaves the same.

use core::ffi::{c_int, c_void};
use kernel::bindings;
use kernel::prelude::*;

module! {
    type: HelloRust,
    name: "hello_rust",
    author: "bookstore lab",
    description: "Hello world from Rust, with a parameter",
    license: "GPL",
}

/// Greetings printed on load. The kernel writes it while loading the module (from
/// `insmod hello_rust.ko times=3`) before `init` runs; with permissions 0444 nothing writes it
/// after that.
static mut TIMES: c_int = 1;

// The parameter, declared by hand: kernel 6.12's `module!` has no `params:` field. This is what
// C's `module_param(times, int, 0444)` and `MODULE_PARM_DESC` expand to: a `struct
// kernel_param` in the `__param` section, which the module loader finds and uses to parse
// `times=N`, plus `parm=` and `parmtype=` strings in `.modinfo` for `modinfo`.

/// A `struct kernel_param` that may live in a `static`.
#[repr(transparent)]
struct KernelParam(bindings::kernel_param);

// SAFETY: the structure is never written after it is built; the kernel only reads it (while
// loading the module, and for sysfs reads, under its own locking). The raw pointers in it
// point to `'static` data.
unsafe impl Sync for KernelParam {}

#[cfg(MODULE)]
// `Opaque<module>` is not FFI-safe as a value, but only its address is ever taken.
#[allow(improper_ctypes)]
extern "C" {
    /// This module's `struct module`, defined by the `.mod.c` file that modpost generates.
    static __this_module: kernel::types::Opaque<bindings::module>;
}

#[cfg(MODULE)]
#[link_section = "__param"]
#[used(compiler)]
static PARAM_TIMES: KernelParam = KernelParam(bindings::kernel_param {
    // The kernel's `c_char` is `u8`; `core`'s is `i8` on x86: same bytes.
    name: c"times".as_ptr().cast(),
    // SAFETY: only the address of `__this_module` is taken, which the kernel fills in at load.
    mod_: unsafe { __this_module.get() },
    // Only the address of the kernel's exported `param_ops_int` is taken (safe for an extern
    // static).
    ops: core::ptr::addr_of!(bindings::param_ops_int),
    perm: 0o444,
    level: -1,
    flags: 0,
    __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 {
        arg: core::ptr::addr_of_mut!(TIMES).cast::<c_void>(),
    },
});

/// Copies a byte string into an array of its length, so it can be a `static` in `.modinfo`.
const fn modinfo<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = text[i];
        i += 1;
    }
    out
}

const PARM: &[u8] = b"parm=times:How many times to greet on load (1 to 10)\0";
const PARMTYPE: &[u8] = b"parmtype=times:int\0";

#[cfg(MODULE)]
#[link_section = ".modinfo"]
#[used(compiler)]
static MODINFO_PARM: [u8; PARM.len()] = modinfo(PARM);

#[cfg(MODULE)]
#[link_section = ".modinfo"]
#[used(compiler)]
static MODINFO_PARMTYPE: [u8; PARMTYPE.len()] = modinfo(PARMTYPE);

struct HelloRust {
    times: c_int,
}

impl kernel::Module for HelloRust {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: the loader wrote `TIMES` before calling `init`, and nothing writes it after
        // (permissions 0444); a volatile read of an `int` cannot tear.
        let times = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(TIMES)) };
        if !(1..=10).contains(&times) {
            pr_err!("times={} is outside 1 to 10\n", times);
            return Err(EINVAL);
        }
        for n in 1..=times {
            pr_info!("Hello, world! (greeting {} of {})\n", n, times);
        }
        Ok(HelloRust { times })
    }
}

impl Drop for HelloRust {
    fn drop(&mut self) {
        pr_info!("Goodbye, world! (greeted {} times)\n", self.times);
    }
}
