# SPDX-License-Identifier: GPL-2.0
#
# oxdax developer entry points (README.md has the two that matter):
#
#   make demo        set up the host, build everything, boot a guest, show oxdax
#   make check       the whole test suite; ends with "N passed, N failed"
#
#   make setup       install host packages and bindgen (idempotent)
#   make kernel      build the guest kernel (cached under ~/.cache/oxdax)
#   make module      build oxdax.ko            make clippy   the same with CLIPPY=1
#   make tests       build the guest test programs
#   make tools       build mkfs.oxdax and fsck.oxdax (build/bin)
#   make initramfs   pack the guest initramfs (module, tools, tests)
#   make host-test   cargo test of the pure logic
#   make fmt         format the Rust sources   make fmt-check  check only
#   make vm          interactive guest shell (scripts/vm has more options)
#   make bench       oxdax vs ext4 -o dax and xfs -o dax in one guest, on the
#                    benchmark kernel: build/bench/report.md (BENCH_REPS=N,
#                    BENCH_SECTIONS="fault pmd ..."; see scripts/bench)
#   make bench-profile  perf profiles of everyday operations on oxdax, ext4
#                    and xfs in the benchmark guest: build/bench-profile
#                    (PROFILE_OPS=..., PROFILE_FS=...; see scripts/bench-profile)
#   make bench-pmem  block throughput: oxdax vs the in-tree pmem driver
#   make fuzz        10,000 mutated images, host logic and guest kernel
#                    (IMAGES=N for another count)
#   make crash       crash campaign: 200 guest kills during a metadata
#                    workload (KILLS=N for another count; MMAP_SYNC=1: during
#                    stores through a MAP_SYNC mapping, on OXDAX_FS)
#   make difftest    differential run: the same random operations on oxdax,
#                    xfs -o dax and ext4 -o dax in one guest, compared after
#                    every step, 1,000,000 of them (DIFFTEST_OPS=N,
#                    DIFFTEST_SEED=S, DIFFTEST_PROCS="1 2",
#                    DIFFTEST_FLAGS="--no-CLASS ...", DIFFTEST_KERNEL=bench;
#                    see scripts/difftest)
#   make clean

SHELL := /bin/bash
ROOT := $(CURDIR)
BUILD := $(ROOT)/build
LIB := . $(ROOT)/scripts/lib.sh
# One cargo target directory per checkout: cargo names a path package's
# artifacts without its path, so two worktrees sharing one would overwrite
# each other's binaries and fingerprints.
export CARGO_TARGET_DIR ?= $(or $(OXDAX_CACHE),$(HOME)/.cache/oxdax)/cargo-target/$(shell printf %s '$(ROOT)' | md5sum | cut -c1-12)

KDIR = $(shell $(LIB); oxdax_kernel_build_dir)
KSRC = $(shell $(LIB); oxdax_kernel_src)
KMAKE_ARGS = $(shell $(LIB); oxdax_kmake_args)
KMAKE = $(MAKE) -C $(KDIR) M=$(ROOT) $(KMAKE_ARGS)

# Crate roots: rustfmt follows their `mod` declarations.
RUST_ROOTS := rust/oxdax_main.rs rust/host.rs tools/mkfs.rs tools/fsck.rs

.PHONY: all demo check setup kernel module clippy tests tools initramfs host-test \
	fmt fmt-check vm bench bench-profile bench-pmem crash fuzz difftest clean

all: initramfs

setup:
	@scripts/setup

kernel: setup
	@scripts/build-kernel >/dev/null

# Kbuild rebuilds only what changed; the log is kept so the test suite can
# insist on zero warnings.
module: kernel
	@mkdir -p $(BUILD)
	@set -o pipefail; $(KMAKE) modules 2>&1 | tee $(BUILD)/module-build.log

clippy: kernel
	@mkdir -p $(BUILD)
	@touch rust/oxdax_main.rs
	@set -o pipefail; $(KMAKE) CLIPPY=1 modules 2>&1 | tee $(BUILD)/clippy.log

# Guest test programs: C (kselftest harness, static) and shell.
TEST_CFLAGS := -O2 -g -Wall -Wextra -Wno-clobbered -Werror -static -D_GNU_SOURCE \
	-I$(ROOT)/tests/lib
GUEST_C_TESTS := $(patsubst tests/guest/%.c,$(BUILD)/tests/guest/%,$(wildcard tests/guest/*.c))
GUEST_SH_TESTS := $(patsubst tests/guest/%,$(BUILD)/tests/guest/%,$(wildcard tests/guest/*.sh))
GUEST_FILES := $(BUILD)/tests/run $(BUILD)/tests/kernel-report.re $(BUILD)/tests/VERSION
# Helper programs the shell tests call (not tests themselves).
GUEST_HELPERS := $(patsubst tests/helpers/%.c,$(BUILD)/tests/bin/%,$(wildcard tests/helpers/*.c))
# The benchmark programs `make bench` runs in the guest.
GUEST_BENCH := $(patsubst tests/bench/%.c,$(BUILD)/tests/bin/%,$(wildcard tests/bench/*.c))

tests: kernel $(GUEST_C_TESTS) $(GUEST_SH_TESTS) $(GUEST_FILES) $(GUEST_HELPERS) $(GUEST_BENCH)

$(BUILD)/tests/bin/%: tests/helpers/%.c tests/lib/*.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -o $@ $<

$(BUILD)/tests/bin/%: tests/bench/%.c tests/lib/*.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -o $@ $<

$(BUILD)/tests/guest/%: tests/guest/%.c tests/lib/*.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -isystem $(KSRC)/tools/testing/selftests -o $@ $<

$(BUILD)/tests/guest/%.sh: tests/guest/%.sh
	@mkdir -p $(@D)
	install -m 755 $< $@

$(BUILD)/tests/run: tests/run
	@mkdir -p $(@D)
	install -m 755 $< $@

$(BUILD)/tests/kernel-report.re: scripts/guest/kernel-report.re
	@mkdir -p $(@D)
	install -m 644 $< $@

$(BUILD)/tests/VERSION: VERSION
	@mkdir -p $(@D)
	install -m 644 $< $@

# Userspace tools, built from the same format code as the module.
tools:
	@cargo build --quiet --release --bins
	@mkdir -p $(BUILD)/bin
	@install -m 755 $(CARGO_TARGET_DIR)/release/mkfs-oxdax $(BUILD)/bin/mkfs.oxdax
	@install -m 755 $(CARGO_TARGET_DIR)/release/fsck-oxdax $(BUILD)/bin/fsck.oxdax

initramfs: module tests tools
	@scripts/mkinitramfs $(BUILD)/initramfs.cpio.gz $(KDIR)

host-test:
	cargo test

fmt:
	/usr/bin/rustfmt --config-path $(ROOT)/.rustfmt.toml $(RUST_ROOTS)

fmt-check:
	/usr/bin/rustfmt --check --color never --config-path $(ROOT)/.rustfmt.toml $(RUST_ROOTS)

vm: initramfs
	scripts/vm

# Builds its own kernel flavour and module in a copy of the tree.
bench:
	@scripts/bench

bench-profile:
	@scripts/bench-profile

bench-pmem: initramfs
	scripts/bench-pmem

fuzz: initramfs
	scripts/fuzz $(or $(IMAGES),10000)

crash: initramfs
	scripts/crash-campaign $(if $(MMAP_SYNC),--mmap-sync) $(or $(KILLS),200)

# DIFFTEST_* settings reach scripts/difftest through the environment.
difftest: setup
	scripts/difftest

demo: initramfs
	scripts/demo

check:
	scripts/test

clean:
	-$(KMAKE) clean
	rm -rf $(BUILD) rust/ffi/bindings_generated.rs
