#!/bin/bash
# scripts/vm exits with the guest command's exit status.
. "$(dirname "$0")/common.bash"
expect_status 0 "$VM" -- true
expect_status 7 "$VM" -- 'echo running in the guest; exit 7'
out=$("$VM" -- 'printf "%s|" "$OXDAX_GUEST" "$(id -u)" "$(pwd)"')
[ "$out" = "1|0|/root|" ] || fail "guest environment: '$out'"
