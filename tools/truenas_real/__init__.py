"""Run this project's middlewared plugin inside a REAL TrueNAS middlewared, built from checkouts.

- :mod:`.build`: the venv with TrueNAS's pins, a copy of ``src/middlewared``, the factory
  database, this project and its plugin loader (``.cache/truenas-real/<key>/``).
- :mod:`.stubs`: stand-ins for the appliance's C-library modules only (``libzfs`` drives zfs-fuse).
- :mod:`.session`: inside private mount and network namespaces, zfs-fuse, the vSphere
  simulator and middlewared (only the needed plugins' ``setup()``), then a command (pytest).
- :mod:`.daemon`: the middlewared entry point with the ``setup()`` restriction.
- ``python -m tools.truenas_real MIDDLEWARE_SRC [API_CLIENT_SRC ZETTAREPL_SRC] [-- pytest args]``
  does all of it (``./run test-truenas``).

Nothing of TrueNAS is copied into this project: the checkouts are read, built and run;
comments cite their files and lines.
"""
