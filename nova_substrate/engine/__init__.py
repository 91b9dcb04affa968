"""The substrate engine: libvirt and QEMU only, no Nova.

Builds miniaturized, generalized guests, docks their memory state in a
pool on tmpfs, and activates clones of them with new identities.
"""
