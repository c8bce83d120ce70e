#!/bin/sh
# /init of the onestack test guest (runs as PID 1 from the initramfs).
#
# Boot sequence: mount the kernel filesystems, load the few kernel modules the guest needs,
# mount the root disk's file system at /disk (when the disk has the test image's),
# start DHCP on every ethernet NIC, read instance metadata from a config drive (label
# "config-2") or from the metadata service, apply hostname and SSH keys, start dropbear,
# run a "#!" user-data script, print "onestack-guest: <hostname> ready" and hand PID 1 to
# busybox init (console shell, clean poweroff on `poweroff` or the ACPI power button).

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022

GUEST_DIR=/usr/share/onestack-guest
RUN_DIR=/run/onestack
MD_URL=http://169.254.169.254/openstack/latest
DHCP_TRIES=5            # udhcpc discover attempts, one second apart, per NIC
CONFIG_DRIVE_WAIT=30    # tenths of a second to wait for a config drive to appear
MD_TRIES=3              # metadata service attempts (each with a 3 s timeout)
# Debian's busybox wget crashes (SIGSEGV) with its own -T timeout: bound it with timeout(1).

log() {
    echo "onestack-guest: $*"
}

# With "onestack.debug" on the kernel command line, print each boot stage with the uptime.
stage() {
    [ -n "$DEBUG" ] && echo "onestack-guest: [$(cut -d' ' -f1 /proc/uptime)] $*"
}

mount_kernel_filesystems() {
    mount -t proc -o nosuid,nodev,noexec proc /proc
    mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
    mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
    mkdir -p "$RUN_DIR" /run/dropbear /var/log
    [ -e /var/run ] || ln -s /run /var/run    # Tempest reads /var/run/udhcpc.<nic>.pid
    [ -e /proc/sys/kernel/modprobe ] && echo /sbin/modprobe > /proc/sys/kernel/modprobe
}

# Load the modules listed in $GUEST_DIR/$1, in order (dependencies first).
load_modules() {
    kver=$(uname -r)
    while read -r mod; do
        [ -n "$mod" ] && insmod "/lib/modules/$kver/$mod" 2>/dev/null
    done < "$GUEST_DIR/$1"
}

start_dhcp() {
    ip link set lo up
    DHCP_PIDS=""
    for dev in /sys/class/net/*; do
        ifname=${dev##*/}
        [ "$ifname" = lo ] && continue
        [ "$(cat "$dev/type" 2>/dev/null)" = 1 ] || continue    # ARPHRD_ETHER only
        ip link set "$ifname" up
        # Blocks until a lease or DHCP_TRIES discovers, then stays in the background (-b).
        udhcpc -i "$ifname" -b -t "$DHCP_TRIES" -T 1 -A 3 \
            -p "/var/run/udhcpc.$ifname.pid" -s "$GUEST_DIR/udhcpc.sh" >/dev/null 2>&1 &
        DHCP_PIDS="$DHCP_PIDS $!"
    done
}

# /dev/disk/by-id/virtio-<serial> of a virtio disk, as udev makes it (no udev here).
disk_link() {
    serial=$(cat "/sys/block/$1/serial" 2>/dev/null)
    [ -n "$serial" ] || return 0
    mkdir -p /dev/disk/by-id
    ln -sf "../../$1" "/dev/disk/by-id/virtio-$serial"
}

# Disks hot-plugged later (volumes): the by-id link and one console line per change
# (added, resized, removed).
watch_disks() {
    now=" "
    for dev in /sys/block/vd*; do
        [ -e "$dev" ] || continue
        name=${dev##*/}
        now="$now$name "
        bytes=$(( $(cat "$dev/size") * 512 ))
        case "$sizes" in
        *" $name:$bytes "*) ;;
        *" $name:"*) log "disk $name resized ($bytes bytes)" ;;
        esac
        sizes="$(echo "$sizes" | sed "s/ $name:[0-9]* / /") $name:$bytes "
        case "$disks" in *" $name "*) continue ;; esac
        disk_link "$name"
        [ "$disks" = "" ] || log "disk $name added (serial $(cat "$dev/serial" 2>/dev/null)," \
            "$bytes bytes)"
    done
    for name in $disks; do
        case "$now" in *" $name "*) continue ;; esac
        find /dev/disk/by-id -lname "../../$name" -exec rm -f {} + 2>/dev/null
        sizes="$(echo "$sizes" | sed "s/ $name:[0-9]* / /") "
        log "disk $name removed"
    done
    disks=$now
}

# NICs hot-plugged later: bring each up with DHCP as at boot (and stop its DHCP client
# when it is unplugged); one line on the console per change. Disks are watched too.
# (What was there at boot is taken in by watch_start, before the guest says it is ready.)
watch_nics() {
    while sleep 1; do
        watch_disks
        now=" "
        for dev in /sys/class/net/*; do
            ifname=${dev##*/}
            now="$now$ifname "
            case "$known" in *" $ifname "*) continue ;; esac
            [ "$(cat "$dev/type" 2>/dev/null)" = 1 ] || continue
            log "nic $ifname added ($(cat "$dev/address" 2>/dev/null))"
            ip link set "$ifname" up
            udhcpc -i "$ifname" -b -t "$DHCP_TRIES" -T 1 -A 3 \
                -p "/var/run/udhcpc.$ifname.pid" -s "$GUEST_DIR/udhcpc.sh" >/dev/null 2>&1 &
        done
        for ifname in $known; do
            case "$now" in *" $ifname "*) continue ;; esac
            pidfile="/var/run/udhcpc.$ifname.pid"
            [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && rm -f "$pidfile"
            log "nic $ifname removed"
        done
        known=$now
    done
}

wait_dhcp() {
    for pid in $DHCP_PIDS; do
        wait "$pid"
    done
}

# Print the ISO9660 volume label of a block device (fallback when findfs knows nothing).
iso_label() {
    magic=$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)
    [ "$magic" = CD001 ] || return 1
    dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | sed 's/ *$//'
}

# Print the block device labelled config-2 (if any) among those present now.
scan_config_drive() {
    dev=$(findfs LABEL=config-2 2>/dev/null) && [ -b "$dev" ] && { echo "$dev"; return 0; }
    dev=$(findfs LABEL=CONFIG-2 2>/dev/null) && [ -b "$dev" ] && { echo "$dev"; return 0; }
    for dev in /dev/vd* /dev/sr* /dev/sd* /dev/hd*; do
        [ -b "$dev" ] || continue
        [ "$(iso_label "$dev")" = config-2 ] && { echo "$dev"; return 0; }
    done
    return 1
}

find_config_drive() {
    # virtio disks are probed synchronously by insmod: look at them first.
    scan_config_drive && return 0
    # Otherwise it may be a CD-ROM on IDE/AHCI: load that stack and give the ports time.
    load_modules modules.cdrom
    i=0
    while [ "$i" -lt "$CONFIG_DRIVE_WAIT" ]; do
        sleep 0.1
        scan_config_drive && return 0
        i=$((i + 1))
    done
    return 1
}

read_config_drive() {
    dev=$(find_config_drive) || return 1
    mkdir -p /mnt/config
    mount -t iso9660 -o ro "$dev" /mnt/config 2>/dev/null ||
        mount -t vfat -o ro "$dev" /mnt/config 2>/dev/null || return 1
    ok=1
    if [ -f /mnt/config/openstack/latest/meta_data.json ]; then
        cp /mnt/config/openstack/latest/meta_data.json "$RUN_DIR/meta_data.json"
        [ -f /mnt/config/openstack/latest/user_data ] &&
            cp /mnt/config/openstack/latest/user_data "$RUN_DIR/user_data"
        [ -f /mnt/config/openstack/latest/network_data.json ] &&
            cp /mnt/config/openstack/latest/network_data.json "$RUN_DIR/network_data.json"
        ok=0
        log "config drive found on $dev"
    fi
    umount /mnt/config
    return $ok
}

read_metadata_service() {
    ip route get 169.254.169.254 >/dev/null 2>&1 || return 1
    n=0
    while [ "$n" -lt "$MD_TRIES" ]; do
        if timeout 3 wget -q -O "$RUN_DIR/meta_data.json" "$MD_URL/meta_data.json" 2>/dev/null
        then
            timeout 3 wget -q -O "$RUN_DIR/user_data" "$MD_URL/user_data" 2>/dev/null ||
                rm -f "$RUN_DIR/user_data"
            timeout 3 wget -q -O "$RUN_DIR/network_data.json" "$MD_URL/network_data.json" \
                2>/dev/null || rm -f "$RUN_DIR/network_data.json"
            log "metadata service answered"
            return 0
        fi
        rm -f "$RUN_DIR/meta_data.json"
        n=$((n + 1))
        [ "$n" -lt "$MD_TRIES" ] && sleep 1
    done
    return 1
}

# Print the JSON leaf values of meta_data.json whose path matches the ERE $1.
md_get() {
    [ -f "$RUN_DIR/meta_data.json" ] || return 1
    jsonq "$1" "$RUN_DIR/meta_data.json"
}

apply_metadata() {
    # The metadata's hostname is a FQDN (Nova appends its dhcp_domain); the host name is
    # its first label, as cloud-init sets it.
    FQDN=$(md_get '^hostname$' | head -n 1 | tr -d ' \t\r')
    [ -n "$FQDN" ] || FQDN=$(md_get '^name$' | head -n 1 | tr -cd 'A-Za-z0-9.-')
    [ -n "$FQDN" ] || FQDN=onestack
    HOST=${FQDN%%.*}
    hostname "$HOST"
    echo "$HOST" > /etc/hostname
    echo "127.0.1.1 $FQDN $HOST" >> /etc/hosts

    uuid=$(md_get '^uuid$' | head -n 1)
    if [ -n "$uuid" ]; then
        echo "$uuid" > "$RUN_DIR/instance-id"
        log "instance $uuid"
    fi

    mkdir -p /root/.ssh
    chmod 700 /root /root/.ssh
    keys=$(md_get '^public_keys[.]')
    [ -n "$keys" ] || keys=$(md_get '^keys[.][0-9]+[.]data$')
    if [ -n "$keys" ]; then
        printf '%s\n' "$keys" | grep -v '^[[:space:]]*$' | awk '!seen[$0]++' \
            > /root/.ssh/authorized_keys
        chmod 600 /root/.ssh/authorized_keys
        log "$(wc -l < /root/.ssh/authorized_keys) ssh key(s) installed for root"
    fi
}

start_sshd() {
    key=/etc/dropbear/dropbear_ed25519_host_key
    if [ ! -f "$key" ]; then
        dropbearkey -t ed25519 -f "$key" 2>/dev/null | grep '^ssh-' | cut -d' ' -f1,2 \
            > /run/ssh_host_ed25519_key.pub
    fi
    # -R: any other host key type is generated on first use; -s: keys only, no passwords.
    dropbear -R -s -p 22 -P /run/dropbear.pid
}

start_acpid() {
    # busybox acpid maps KEY_POWER from the ACPI button driver to /etc/acpi/PWRF/00000080.
    ls /dev/input/event* >/dev/null 2>&1 && acpid -c /etc/acpi -l /var/log/acpid.log
}

run_user_data() {
    ud="$RUN_DIR/user_data"
    [ -s "$ud" ] || return 0
    if [ "$(head -c 2 "$ud")" = '#!' ]; then
        chmod 700 "$ud"
        log "running user-data script"
        (cd /root && "$ud" </dev/null 2>&1)
        log "user-data script exited with status $?"
    else
        log "user-data is not a script, ignored"
    fi
}

# The root disk's file system (the test image's disk carries an empty FAT file system
# labelled GUESTDISKFS): mounted at /disk, where what is written stays on the disk (or on
# the root volume the guest booted from). The rest of the guest lives in memory.
mount_root_disk() {
    mkdir -p /disk
    [ -b /dev/vda ] || return 0
    [ "$(dd if=/dev/vda bs=1 skip=71 count=11 2>/dev/null)" = GUESTDISKFS ] || return 0
    mount -t vfat -o rw,noatime,flush /dev/vda /disk && log "root disk mounted at /disk"
}

mount_kernel_filesystems
DEBUG=
grep -qw onestack.debug /proc/cmdline && DEBUG=1
stage "init started"
load_modules modules.boot
stage "modules loaded"
mount_root_disk
start_acpid
start_dhcp
start_sshd &
SSHD_PID=$!
stage "dhcp and sshd started"
if ! read_config_drive; then
    wait_dhcp
    read_metadata_service || log "no config drive and no metadata service"
fi
stage "metadata read"
apply_metadata
wait "$SSHD_PID"
log "ssh host key $(cat /run/ssh_host_ed25519_key.pub 2>/dev/null)"
stage "sshd started"
wait_dhcp
run_user_data
stage "user-data done"
for addr in $(ip -o -4 addr show scope global 2>/dev/null | awk '{print $2 "=" $4}'); do
    log "address $addr"
done
log "up $(cut -d' ' -f1 /proc/uptime) s"
watch_start() {
    known=" "
    for dev in /sys/class/net/*; do known="$known${dev##*/} "; done
    disks=""
    sizes=" "
    watch_disks
}
watch_start
log "$HOST ready"
watch_nics </dev/null >/dev/console 2>&1 &

exec /sbin/init
