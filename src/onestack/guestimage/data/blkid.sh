#!/bin/sh
# The test guest's "blkid -L LABEL [-o device]": the device whose filesystem label is LABEL
# (Tempest finds the config drive this way). Other uses are not served.
label=""
while [ $# -gt 0 ]; do
    case "$1" in
    -L) label=$2; shift 2 ;;
    -o) shift 2 ;;
    *) shift ;;
    esac
done
[ -n "$label" ] || { echo "usage: blkid -L LABEL [-o device]" >&2; exit 2; }
dev=$(findfs "LABEL=$label" 2>/dev/null) && [ -b "$dev" ] && { echo "$dev"; exit 0; }
for dev in /dev/sr* /dev/vd* /dev/sd* /dev/hd*; do
    [ -b "$dev" ] || continue
    [ "$(dd if="$dev" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || continue
    found=$(dd if="$dev" bs=1 skip=32808 count=32 2>/dev/null | sed 's/ *$//')
    [ "$found" = "$label" ] && { echo "$dev"; exit 0; }
done
exit 2
