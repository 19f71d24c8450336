"""VM sets: real Debian VMs under QEMU for the SSH backend, so exercises run on Debian's own
kernels (bookworm's 6.1, trixie's 6.12) beside this machine's.

    recipe.py   what a VM image is made of, and the hash that says when to rebuild it
    image.py    the cached image: debootstrap, images/vm/, a kernel and initrd, one ext4 disk
    accel.py    KVM or TCG, and why
    seed.py     each VM's own disk of settings: hostname, host key, the set's user key, addresses
    tap.py      tap devices made inside the set's namespace, handed to QEMU as open files
    vmset.py    a set's folder and record (what `down` reads), its inventory, ssh_config, known_hosts
    boot.py     bringing a set up: namespace, bridges, QEMU per VM, waiting for each one's sshd
    teardown.py bringing it down, from the record alone (after a SIGKILL of `up` too)
"""
