#!/bin/sh
# Runs inside the ZFS lab (zvbench lab --pool tank -- this-script ZVBENCH SCENARIO OUT):
# the key file of the scenario's encrypted zvol, `zvbench run`, then every dataset and
# snapshot left under the pool, one per line as `left NAME` (the pool itself is expected).
set -eu
zvbench=$1
scenario=$2
out=$3
head -c 32 /dev/urandom > /var/tmp/zvbench-lab.key
"$zvbench" run "$scenario" --out "$out"
zfs list -H -o name -t all -r tank | sed 's/^/left /'
