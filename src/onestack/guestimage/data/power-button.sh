#!/bin/sh
# Run by busybox acpid for the ACPI power button (KEY_POWER): ask busybox init to power off.
echo "onestack-guest: ACPI power button pressed" > /dev/console
exec /sbin/poweroff
