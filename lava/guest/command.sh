# The ksm-harness guest command for LAVA's qemu device (lava/devices/ksm-qemu.jinja2
# shares this directory as the "results" 9p share).  harness/initramfs.py's /init
# prepares the guest root (the host's / under a tmpfs overlay, /proc, /sys,
# debugfs, memcg, /run) and runs this file inside it; instead of a harness
# command it hands the console to LAVA: an interactive shell in the initramfs
# root (/proc/1/root, where LAVA appended its test overlay /lava-N), with every
# busybox applet that lava-test-runner uses.  lava/run-ksm-harness then runs
# the harness in the prepared root, /newroot.
bb=/run/ksm-harness/busybox
$bb chroot /proc/1/root /bin/busybox --install -s /bin
export PS1='ksm-harness-lava# '
exec $bb chroot /proc/1/root /bin/sh -i </dev/console >/dev/console 2>&1
