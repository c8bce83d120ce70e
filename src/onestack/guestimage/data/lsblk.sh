#!/bin/sh
# The test guest's "lsblk [-l] [-b] [--nodeps]": one line per block device from /sys/block
# (NAME, MAJ:MIN, RM, SIZE, RO, TYPE, MOUNTPOINT), sizes in bytes with -b. Enough for
# Tempest's validation, which counts the lines whose TYPE column says "disk".
bytes=0
for arg in "$@"; do
    case "$arg" in
    --bytes) bytes=1 ;;
    --*) ;;
    -*b*) bytes=1 ;;
    esac
done
human() {
    awk -v s="$1" 'BEGIN { split("B K M G T", u, " "); i = 1;
        while (s >= 1024 && i < 5) { s /= 1024; i++ }
        printf (s == int(s) ? "%d%s" : "%.1f%s"), s, u[i] }'
}
row() {
    printf '%-8s %7s %2s %14s %2s %4s %s\n' "$@"
}
row NAME MAJ:MIN RM SIZE RO TYPE MOUNTPOINT
for dev in /sys/block/*; do
    name=${dev##*/}
    case "$name" in loop* | ram* | zram*) continue ;; esac
    size=$(( $(cat "$dev/size") * 512 ))
    [ "$bytes" = 1 ] || size=$(human "$size")
    type=disk
    case "$name" in sr*) type=rom ;; esac
    mount=$(awk -v d="/dev/$name" '$1 == d { print $2; exit }' /proc/mounts)
    row "$name" "$(cat "$dev/dev")" "$(cat "$dev/removable")" "$size" "$(cat "$dev/ro")" \
        "$type" "$mount"
done
