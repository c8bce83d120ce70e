#!/bin/sh
# The test guest's "mkfs [-t TYPE] DEVICE" (Tempest formats attached volumes with it):
# vfat with busybox mkdosfs (the guest's kernel mounts vfat), ext2 with busybox mke2fs.
type=vfat
while [ $# -gt 1 ]; do
    case "$1" in
    -t) type=$2; shift 2 ;;
    *) break ;;
    esac
done
case "$type" in
vfat | fat | msdos) exec mkdosfs "$@" ;;
ext2) exec mke2fs "$@" ;;
*) echo "mkfs: file system type $type is not supported by this guest" >&2; exit 1 ;;
esac
