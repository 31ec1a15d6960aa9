#!/bin/sh
# Runs inside the ZFS lab (zvbench lab -- this-script AGENT N): a pool on the first lab
# disk, one zvol per sync setting, zvbench-agent writing N 4 KiB blocks with O_DIRECT and
# an fsync after each. Prints one line per setting with the layers' counters:
#   sync=S agent_flushes=A zil_commits=Z zil_source=dataset|pool-wide vdev_flushes=F
# (ZIL commits from the zvol's objset kstat, or the pool-wide zil kstat on OpenZFS 2.1;
# vdev flushes from /sys/block/<disk>/stat field 16). Destroys the pool at the end.
set -eu
agent=$1
n=$2
disk=${ZVBENCH_LAB_DISKS%% *}
vdev=${disk#/dev/}
pool=zvlab

flushes() { awk '{ print $16 }' "/sys/block/$vdev/stat"; }

# The zvol's objset kstat (OpenZFS 2.2+), else the pool-wide one.
zil_kstat() {
  for k in /proc/spl/kstat/zfs/$pool/objset-*; do
    [ -e "$k" ] || continue
    # OpenZFS 2.1's objset kstats have no zil_commit_count.
    if awk -v ds="$1" '$1 == "dataset_name" && $3 == ds { n = 1 } $1 == "zil_commit_count" { c = 1 }
                       END { exit !(n && c) }' "$k"; then
      echo "$k dataset"
      return
    fi
  done
  echo "/proc/spl/kstat/zfs/zil pool-wide"
}

commits() { awk '$1 == "zil_commit_count" { print $3 }' "$1"; }

wait_for() {
  i=0
  while [ ! -e "$1" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "$1 did not appear" >&2; exit 1; }
    sleep 0.1
  done
}

zpool create -f -o cachefile=none -m none "$pool" "$disk"
trap 'zpool destroy -f "$pool" 2>/dev/null || true' EXIT
for s in standard disabled; do
  zfs create -V 64M -o volblocksize=16K -o sync="$s" "$pool/$s"
  udevadm settle --timeout=30 || true
  dev=/dev/zvol/$pool/$s
  wait_for "$dev"
  set -- $(zil_kstat "$pool/$s")
  kstat=$1 source=$2
  z0=$(commits "$kstat")
  f0=$(flushes)
  out=$("$agent" run --path "$dev" --workload seqwr --bs 4K --size "$((n * 4))K" \
        --direct --sync fsync --no-end-fsync --format json)
  z1=$(commits "$kstat")
  f1=$(flushes)
  a=$(printf '%s\n' "$out" | grep -o '"agent_flushes":[0-9]*' | head -n1 | cut -d: -f2)
  echo "sync=$s agent_flushes=$a zil_commits=$((z1 - z0)) zil_source=$source vdev_flushes=$((f1 - f0))"
done
zpool destroy "$pool"
trap - EXIT
