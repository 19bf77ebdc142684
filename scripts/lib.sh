# Shared settings for oxdax's scripts. Sourced, not run.
# shellcheck shell=bash

OXDAX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OXDAX_CACHE=${OXDAX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oxdax}

# Toolchain pinned by Documentation/dev-tools.rst: Debian's rustc-web (the
# only rustc with library sources here), LLVM 19 and bindgen 0.71.1.
OXDAX_BINDGEN_VERSION=0.71.1
OXDAX_RUSTC=/usr/bin/rustc
OXDAX_RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library
OXDAX_CLIPPY_DRIVER=/usr/bin/clippy-driver
OXDAX_RUSTFMT=/usr/bin/rustfmt
OXDAX_BINDGEN=$OXDAX_CACHE/tools/bindgen-$OXDAX_BINDGEN_VERSION/bin/bindgen
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

OXDAX_KERNEL_TARBALL=/usr/src/linux-source-6.12.tar.xz

# Make variables every kernel or module build needs.
oxdax_kmake_args() {
	printf '%s\n' ARCH=x86_64 LLVM=-19 "RUSTC=$OXDAX_RUSTC" \
		"BINDGEN=$OXDAX_BINDGEN" "RUST_LIB_SRC=$OXDAX_RUST_LIB_SRC" \
		"CLIPPY_DRIVER=$OXDAX_CLIPPY_DRIVER" "RUSTFMT=$OXDAX_RUSTFMT"
}

oxdax_log() { printf '[oxdax %s] %s\n' "$(date +%T)" "$*" >&2; }
oxdax_die() { printf '[oxdax] error: %s\n' "$*" >&2; exit 1; }

# Elapsed-time ticker for long steps: prints every 30 s to stderr.
oxdax_ticker_start() {
	local what=$1 start=$SECONDS
	( while sleep 30; do
		printf '[oxdax %s] ... still %s (%d s)\n' "$(date +%T)" "$what" \
			$((SECONDS - start)) >&2
	  done ) &
	OXDAX_TICKER=$!
}
oxdax_ticker_stop() {
	[ -n "${OXDAX_TICKER:-}" ] && kill "$OXDAX_TICKER" 2>/dev/null
	wait "$OXDAX_TICKER" 2>/dev/null || true
	OXDAX_TICKER=
}

oxdax_kernel_pkg_version() {
	dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null ||
		oxdax_die "linux-source-6.12 is not installed: run scripts/setup"
}

# The unpacked source tree, keyed by the Debian package version.
oxdax_kernel_src() {
	echo "$OXDAX_CACHE/src/linux-source-6.12_$(oxdax_kernel_pkg_version)"
}

# Two guest kernels: "debug" (default) runs every test, with lockdep, KASAN
# and friends; "bench" is the same kernel without debug.config, so that
# benchmarks compare filesystems rather than their debugging overheads.
OXDAX_KERNEL_FLAVOUR=${OXDAX_KERNEL_FLAVOUR:-debug}

# The configuration fragments merged over tinyconfig, in order.
oxdax_kconfig_fragments() {
	echo "$OXDAX_ROOT/scripts/kconfig/oxdax.config"
	case $OXDAX_KERNEL_FLAVOUR in
	debug) echo "$OXDAX_ROOT/scripts/kconfig/debug.config" ;;
	bench) echo "$OXDAX_ROOT/scripts/kconfig/bench.config" ;;
	*) oxdax_die "unknown OXDAX_KERNEL_FLAVOUR '$OXDAX_KERNEL_FLAVOUR' (debug or bench)" ;;
	esac
}

# Everything that changes the guest kernel's bits goes into its key, so an
# unchanged configuration is never rebuilt and a changed one never reused.
oxdax_kernel_key() {
	local fragments
	mapfile -t fragments < <(oxdax_kconfig_fragments)
	{
		oxdax_kernel_pkg_version; echo
		cat "${fragments[@]}"
		"$OXDAX_RUSTC" --version
		clang-19 --version | head -n1
		"$OXDAX_BINDGEN" --version
	} | sha256sum | cut -c1-16
}

oxdax_kernel_build_dir() {
	echo "$OXDAX_CACHE/kbuild/6.12-$(oxdax_kernel_key)"
}

# The module is built against one kernel per tree: to boot another
# flavour, copy this tree (tracked and new files, modification times kept
# so that a second run rebuilds only what changed) to $2, build its guest
# image there for flavour $1 and leave this tree's build products alone.
# Prints the copy's root; its scripts/vm boots that flavour's kernel.
oxdax_flavour_tree() {
	local flavour=$1 tree=$2
	mkdir -p "$tree"
	git -C "$OXDAX_ROOT" ls-files -z -co --exclude-standard |
		tar -C "$OXDAX_ROOT" --null --ignore-failed-read -T - -cf - |
		tar -C "$tree" -xf -
	OXDAX_KERNEL_FLAVOUR=$flavour make -C "$tree" --no-print-directory initramfs >&2
	echo "$tree"
}
