#!/usr/bin/env bash
# lab/kernel/test.sh: the lab's kernel-module steps, proven in a real kernel under qemu.
#
# On a fresh Debian 12 machine this installs what it needs, builds a small Rust-enabled kernel
# from Debian's packaged source (cached, keyed by source version, configuration, compiler and
# bindgen), builds the Rust module and its C twin against it, boots the kernel under qemu (TCG)
# with a busybox initramfs, runs insmod / lsmod / modinfo / dmesg / rmmod for each module inside
# the guest, and checks every step's output from the serial console.
#
# Usage: lab/kernel/test.sh            run everything; exit 0 only if every check passes
#        lab/kernel/test.sh --kernel   only install and build (or find) the kernel
# Environment: BOOKSTORE_KERNEL_BREAK=rust|c  builds that module with a wrong load message,
#              to show that the checks catch it (the run must then fail).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bookstore/kernel
JOBS=$(nproc)
BINDGEN_VERSION=0.73.2
KERNEL_SOURCE_PACKAGE=linux-source-6.12
# bindgen is not among them: it comes from crates.io (Debian's 0.60 is too old for 6.12).
PACKAGES=(
  "$KERNEL_SOURCE_PACKAGE" rustc-web rust-web-src
  clang lld llvm libclang-dev build-essential bc bison flex libelf-dev libssl-dev
  cpio kmod xz-utils busybox-static qemu-system-x86
)
MODULES=(hello_rust hello_c)
# tinyconfig plus what a module-loading, Rust-enabled guest on a serial console needs.
CONFIG_OPTIONS=(
  -e 64BIT -e MODULES -e MODULE_UNLOAD -e PRINTK -e PRINTK_TIME -e EARLY_PRINTK -e TTY
  -e SERIAL_8250 -e SERIAL_8250_CONSOLE -e BLK_DEV_INITRD -e RD_GZIP -e BINFMT_ELF
  -e BINFMT_SCRIPT -e DEVTMPFS -e DEVTMPFS_MOUNT -e PROC_FS -e SYSFS -e RUST
  -d MODVERSIONS -d RANDSTRUCT -d DEBUG_INFO_BTF -d WERROR
)

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'lab/kernel/test.sh: %s\n' "$*" >&2; exit 1; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
  if ! "$CACHE/tools/bin/bindgen" --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
    say "building bindgen-cli $BINDGEN_VERSION (about a minute)"
    cargo install --quiet --locked --root "$CACHE/tools" "bindgen-cli@$BINDGEN_VERSION"
  fi
  # The kernel's Rust must be Debian's rustc-web (it ships the library source the kernel
  # needs); rustup's toolchain, first in PATH on these machines, cannot build it.
  export PATH="/usr/bin:$CACHE/tools/bin:$PATH"
}

print_versions() {
  say "versions"
  echo "kernel source: $KERNEL_SOURCE_PACKAGE $(dpkg-query -W -f='${Version}' "$KERNEL_SOURCE_PACKAGE")"
  echo "rustc:         $(rustc --version)"
  echo "bindgen:       $(bindgen --version)"
  echo "clang:         $(clang --version | head -n1)"
  echo "qemu:          $(qemu-system-x86_64 --version | head -n1)"
  echo "busybox:       $(busybox | head -n1)"
}

kmake() { make -s -C "$KDIR" LLVM=1 -j"$JOBS" "$@"; }

build_kernel() {
  local version key
  version=$(dpkg-query -W -f='${Version}' "$KERNEL_SOURCE_PACKAGE")
  key=$(printf '%s\n' "$version" "${CONFIG_OPTIONS[*]}" "$(rustc --version)" "$BINDGEN_VERSION" | sha256sum | cut -c1-16)
  KDIR="$CACHE/linux-$key"
  if [ -f "$KDIR/.bookstore-build-ok" ]; then
    say "kernel: using the cached build $KDIR"
    return
  fi
  say "kernel: building $KERNEL_SOURCE_PACKAGE $version (tinyconfig + Rust) in $KDIR (4-5 minutes on 2 cores)"
  rm -rf "$KDIR"
  mkdir -p "$KDIR"
  tar -xf "/usr/src/$KERNEL_SOURCE_PACKAGE.tar.xz" -C "$KDIR" --strip-components=1
  if ! kmake rustavailable; then
    die "the kernel refuses this Rust toolchain ($(rustc --version), bindgen $(bindgen --version)); see ../shared/kernel-notes.md"
  fi
  kmake tinyconfig
  "$KDIR/scripts/config" --file "$KDIR/.config" "${CONFIG_OPTIONS[@]}"
  kmake olddefconfig
  grep -qx 'CONFIG_RUST=y' "$KDIR/.config" || die "CONFIG_RUST=y did not stick in the kernel configuration"
  kmake
  touch "$KDIR/.bookstore-build-ok"
}

install_packages
print_versions
build_kernel
[ "${1:-}" = "--kernel" ] && exit 0

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bookstore-kernel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
KREL=$(make -s -C "$KDIR" kernelrelease)

build_modules() {
  for m in "${MODULES[@]}"; do
    say "module: building $m against $KREL (make KDIR=... LLVM=1)"
    cp -r "$HERE/$m" "$WORK/$m"
    case "${BOOKSTORE_KERNEL_BREAK:-}" in
      rust) [ "$m" = hello_rust ] && sed -i 's/Hello, world!/Hello, wrold!/' "$WORK/$m/$m.rs" ;;
      c) [ "$m" = hello_c ] && sed -i 's/Hello, world!/Hello, wrold!/' "$WORK/$m/$m.c" ;;
    esac
    make -s -C "$WORK/$m" KDIR="$KDIR" LLVM=1
    [ -f "$WORK/$m/$m.ko" ] || die "$m.ko was not built"
  done
}

# The guest's /init: the lab's steps for each module, each between markers the host parses.
# dmesg is filtered to the module's own lines: the kernel probes devices (the i8042 mouse, for
# one) while the steps run, and a late probe's line once landed among the last three.
write_init() {
  cat > "$WORK/init" <<INIT
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
M=/lib/modules/\$(uname -r)
depmod
step() { name=\$1; shift; echo "@@STEP \$name"; echo "\$ \$*"; sh -c "\$*" 2>&1; echo "@@RC \$?"; }
for m in ${MODULES[*]}; do
  step \$m.insmod       "insmod \$M/\$m.ko"
  step \$m.lsmod        "lsmod | grep \$m"
  step \$m.modinfo      "modinfo \$m"
  step \$m.param        "cat /sys/module/\$m/parameters/times"
  step \$m.dmesg_load   "dmesg | grep \$m: | tail -n 2"
  step \$m.rmmod        "rmmod \$m"
  step \$m.lsmod_gone   "lsmod | grep \$m"
  step \$m.dmesg_unload "dmesg | grep \$m: | tail -n 1"
  step \$m.insmod3      "insmod \$M/\$m.ko times=3"
  step \$m.param3       "cat /sys/module/\$m/parameters/times"
  step \$m.dmesg3       "dmesg | grep \$m: | tail -n 3"
  step \$m.rmmod3       "rmmod \$m"
  step \$m.insmod_bad   "insmod \$M/\$m.ko times=0"
  step \$m.dmesg_bad    "dmesg | grep \$m: | tail -n 1"
done
echo "@@END"
reboot -f
INIT
}

build_initramfs() {
  say "initramfs: busybox, /init and the modules"
  write_init
  local busybox
  busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
  {
    echo "dir /dev 0755 0 0"
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "dir /proc 0755 0 0"
    echo "dir /sys 0755 0 0"
    echo "dir /bin 0755 0 0"
    echo "dir /lib 0755 0 0"
    echo "dir /lib/modules 0755 0 0"
    echo "dir /lib/modules/$KREL 0755 0 0"
    echo "file /bin/busybox $busybox 0755 0 0"
    echo "slink /bin/sh busybox 0777 0 0"
    echo "file /init $WORK/init 0755 0 0"
    for m in "${MODULES[@]}"; do
      echo "file /lib/modules/$KREL/$m.ko $WORK/$m/$m.ko 0644 0 0"
    done
  } > "$WORK/initramfs.list"
  "$KDIR/usr/gen_init_cpio" "$WORK/initramfs.list" | gzip -9 > "$WORK/initramfs.cpio.gz"
}

boot() {
  say "qemu: booting $KREL (TCG, bounded to 120 s)"
  local started=$SECONDS rc=0
  timeout 120 qemu-system-x86_64 -accel tcg -m 256M -no-reboot -display none -monitor none \
    -kernel "$KDIR/arch/x86/boot/bzImage" -initrd "$WORK/initramfs.cpio.gz" \
    -append "console=ttyS0 loglevel=3 panic=-1 rdinit=/init" \
    -serial "file:$WORK/console.raw" || rc=$?
  tr -d '\r' < "$WORK/console.raw" > "$WORK/console.log"
  echo "qemu exited with $rc after $((SECONDS - started)) s"
  [ "$rc" -eq 0 ] || { cat "$WORK/console.log"; die "qemu did not exit cleanly (124 means it hit the time limit)"; }
  grep -q '^@@END$' "$WORK/console.log" || { cat "$WORK/console.log"; die "the guest did not finish its steps"; }
}

PASSED=0
FAILED=0

# The lines a step printed (its command first), without the markers.
step_output() { awk -v s="@@STEP $1" '$0 == s {f = 1; next} /^@@(STEP|END)/ {f = 0} f && !/^@@RC /' "$WORK/console.log"; }
step_rc() { awk -v s="@@STEP $1" '$0 == s {f = 1; next} /^@@(STEP|END)/ {f = 0} f && /^@@RC / {print $2}' "$WORK/console.log"; }

show() { step_output "$1" | sed 's/^/    /'; }

verdict() {
  if [ "$1" = pass ]; then
    PASSED=$((PASSED + 1)); printf '      ok    %s\n' "$2"
  else
    FAILED=$((FAILED + 1)); printf '      FAIL  %s\n' "$2"
  fi
}

expect_rc() {      # STEP WANT(0|nonzero) WHAT
  local rc; rc=$(step_rc "$1")
  if { [ "$2" = 0 ] && [ "$rc" = 0 ]; } || { [ "$2" = nonzero ] && [ -n "$rc" ] && [ "$rc" != 0 ]; }; then
    verdict pass "$3"
  else
    verdict fail "$3 (exit code ${rc:-none})"
  fi
}

expect_text() {    # STEP TEXT WHAT: a line of the step's output (not the command) contains TEXT
  if step_output "$1" | tail -n +2 | grep -qF -- "$2"; then verdict pass "$3"; else verdict fail "$3: no line with \"$2\""; fi
}

expect_line() {    # STEP LINE WHAT: a line of the step's output is exactly LINE
  if step_output "$1" | tail -n +2 | grep -qxF -- "$2"; then verdict pass "$3"; else verdict fail "$3: no line \"$2\""; fi
}

expect_count() {   # STEP TEXT N WHAT
  local n; n=$(step_output "$1" | tail -n +2 | grep -cF -- "$2" || true)
  if [ "$n" = "$3" ]; then verdict pass "$4"; else verdict fail "$4: $n lines with \"$2\", wanted $3"; fi
}

check_module() {
  local m=$1
  say "$m in the guest"
  show "$m.insmod";       expect_rc "$m.insmod" 0 "insmod loads it"
  show "$m.lsmod";        expect_text "$m.lsmod" "$m" "lsmod lists it"
  show "$m.modinfo";      expect_rc "$m.modinfo" 0 "modinfo reads it"
  show "$m.param";        expect_line "$m.param" "1" "the parameter defaults to 1 in /sys/module/$m/parameters/times"
  show "$m.dmesg_load";   expect_text "$m.dmesg_load" "$m: Hello, world! (greeting 1 of 1)" "dmesg has the load message"
  show "$m.rmmod";        expect_rc "$m.rmmod" 0 "rmmod unloads it"
  show "$m.lsmod_gone";   expect_rc "$m.lsmod_gone" nonzero "lsmod no longer lists it"
  show "$m.dmesg_unload"; expect_text "$m.dmesg_unload" "$m: Goodbye, world! (greeted 1 times)" "dmesg has the unload message"
  show "$m.insmod3";      expect_rc "$m.insmod3" 0 "insmod with times=3 loads it"
  show "$m.param3";       expect_line "$m.param3" "3" "the parameter reads 3"
  show "$m.dmesg3";       expect_count "$m.dmesg3" "$m: Hello, world! (greeting " 3 "it greets three times"
                          expect_text "$m.dmesg3" "$m: Hello, world! (greeting 3 of 3)" "the load message shows the parameter"
  show "$m.rmmod3";       expect_rc "$m.rmmod3" 0 "rmmod unloads it again"
  show "$m.insmod_bad";   expect_rc "$m.insmod_bad" nonzero "times=0 is refused"
  show "$m.dmesg_bad";    expect_text "$m.dmesg_bad" "$m: times=0 is outside 1 to 10" "and says why"
}

check_modinfo_on_host() {
  local m=$1 ko="$WORK/$1/$1.ko" out
  say "$m: modinfo $m.ko (the host's kmod modinfo)"
  out=$(/sbin/modinfo "$ko" 2>&1) || true
  printf '%s\n' "$out" | sed 's/^/    /'
  for want in "author:         bookstore lab" "license:        GPL" "parm:           times:How many times to greet on load (1 to 10) (int)" "name:           $m"; do
    if printf '%s\n' "$out" | grep -qxF -- "$want"; then verdict pass "modinfo: $want"; else verdict fail "modinfo lacks: $want"; fi
  done
  if printf '%s\n' "$out" | grep -q "^description:    Hello world from "; then verdict pass "modinfo: description"; else verdict fail "modinfo lacks the description"; fi
}

build_modules
build_initramfs
boot
for m in "${MODULES[@]}"; do
  check_modinfo_on_host "$m"
  check_module "$m"
done
say "kernel module checks: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
