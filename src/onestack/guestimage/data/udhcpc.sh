#!/bin/sh
# busybox udhcpc event handler of the onestack test guest: applies a DHCPv4 lease.
# udhcpc exports interface, ip, mask (prefix length), subnet, broadcast, router, dns, domain,
# mtu and staticroutes (option 121, "dest/len gw ...").

case "$1" in
deconfig)
    ip -4 addr flush dev "$interface" 2>/dev/null
    ip link set "$interface" up
    ;;
bound|renew)
    prefix=${mask:-24}
    if ! ip -4 addr show dev "$interface" | grep -q " $ip/$prefix "; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$prefix" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    fi
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    # Every NIC's lease may carry a router: each NIC's routes get a metric of its own, the
    # first NIC's lowest, so eth0 keeps the default route whatever lease comes last (as
    # cloud images' network configuration does).
    metric=$((100 + $(cat "/sys/class/net/$interface/ifindex" 2>/dev/null || echo 0)))
    if [ -n "$staticroutes" ]; then
        # RFC 3442: when classless routes are present the router option is ignored.
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip route replace "$1" dev "$interface" metric "$metric"
            else
                ip route replace "$1" via "$2" dev "$interface" metric "$metric"
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        for gw in $router; do
            ip route replace default via "$gw" dev "$interface" metric "$metric"
            break
        done
    fi
    if [ -n "$dns" ]; then
        {
            [ -n "$domain" ] && echo "search $domain"
            for ns in $dns; do
                echo "nameserver $ns"
            done
        } > /etc/resolv.conf
    fi
    ;;
esac
exit 0
