#!/bin/bash
# The quick tier of the crash campaign: a few kills of a guest running a
# metadata-heavy workload on oxdax; after each, fsck is clean and every
# acknowledged (fsynced) operation is there. `make crash` runs 200.
. "$(dirname "$0")/common.bash"
"$OXDAX_ROOT/scripts/crash-campaign" "${OXDAX_CRASH_KILLS:-3}"
