"""The libvirt adapter: local KVM/QEMU guests behind the engine's ports (the only libvirt code).

``inventory`` reads each domain's XML into ``VmFacts`` (its disks as host paths: files,
zvols, storage-pool volumes; its passthrough devices; its guest agent channel) and asks
the agent what it would freeze; ``hypervisor`` implements the ``Hypervisor`` and ``Guests``
ports (freeze and thaw through the QEMU guest agent, pause and resume, shutdown and start);
``errors`` turns every ``libvirtError`` into one of the engine's typed failures.
"""
