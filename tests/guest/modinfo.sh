#!/bin/sh
# modinfo of oxdax.ko names the module, its licence, version, parameters and
# a vermagic matching the running kernel.
set -eu
ko=/oxdax/oxdax.ko
field() { modinfo -F "$1" $ko; }
fail() { echo "modinfo: $*"; modinfo $ko; exit 1; }

[ "$(field name)" = oxdax ] || fail "name is '$(field name)'"
[ "$(field license)" = GPL ] || fail "license is '$(field license)'"
[ "$(field version)" = "$(cat /oxdax/tests/VERSION)" ] || fail "version is '$(field version)'"
field description | grep -q 'Persistent memory' || fail "description"
[ -n "$(field author)" ] || fail "no author"
field parm | grep -q '^fault_engine:Default page-fault engine' || fail "parm: '$(field parm)'"
vermagic=$(field vermagic)
case $vermagic in
"$(uname -r) "*) ;;
*) fail "vermagic '$vermagic' does not match kernel $(uname -r)" ;;
esac
echo "# $(field name) $(field version), vermagic $vermagic"
