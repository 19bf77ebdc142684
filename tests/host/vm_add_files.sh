#!/bin/bash
# --add copies host files and directories into the guest, at a given path or
# under /root; several NVDIMMs appear as several namespaces.
. "$(dirname "$0")/common.bash"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "file content $$" > "$tmp/afile"
mkdir "$tmp/adir"
echo nested > "$tmp/adir/inner"
expect_status 0 "$VM" --nvdimm 32M --nvdimm 64M \
	--add "$tmp/afile" --add "$tmp/adir:/srv/dir" --add "$tmp/afile:/opt/x/renamed" -- \
	"grep -q 'file content $$' /root/afile && grep -q nested /srv/dir/inner &&
	 cmp /root/afile /opt/x/renamed &&
	 test \$(ls -d /sys/bus/nd/devices/namespace*.0 | wc -l) = 2"
