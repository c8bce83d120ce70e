#!/bin/sh
# The test guest's "curl": the few forms Tempest's scenarios use, through busybox wget
#   curl URL                      GET, the body on stdout
#   curl -X POST -d DATA URL      POST DATA
method=GET data=""
while [ $# -gt 1 ]; do
    case "$1" in
    -X) method=$2; shift 2 ;;
    -d|--data) data=$2; method=POST; shift 2 ;;
    -s|-f|-sf|-fs|-q) shift ;;
    *) break ;;
    esac
done
if [ "$method" = POST ]; then
    exec timeout 20 wget -q -O - --post-data="$data" "$1"
fi
exec timeout 20 wget -q -O - "$1"
