#!/bin/sh
# The test guest has only root: "sudo CMD" runs CMD (Tempest's remote commands use sudo).
[ "$1" = "-n" ] && shift
exec "$@"
