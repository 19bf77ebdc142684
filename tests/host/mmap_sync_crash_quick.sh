#!/bin/bash
# The quick tier of the MAP_SYNC crash campaign: a few kills of a guest
# storing through a MAP_SYNC mapping (block allocation in the write fault,
# cache lines written back from userspace, no fsync); after each, every
# acknowledged page is there and the filesystem checks clean. OXDAX_FS
# chooses the filesystem (default oxdax, a skip while its files cannot be
# mapped with MAP_SYNC). `scripts/crash-campaign --mmap-sync` runs 200.
. "$(dirname "$0")/common.bash"
"$OXDAX_ROOT/scripts/crash-campaign" --mmap-sync "${OXDAX_CRASH_KILLS:-3}"
