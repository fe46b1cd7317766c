"""The few hardware and ZFS look-ups that are answered through TrueNAS's own ``test.set_mock``.

``plugins/test/mock.py`` (TS-25.10.6) ``TestService.set_mock(name, args, description)``: a
string description is ``exec``-ed in middlewared and must define ``mock``; ``main.py``
``set_mock``/``_mock_method`` (line ~1169) then answer every call of that method, from inside
middlewared (``call``/``call_sync``) and over the websocket
(``api/base/server/method.py`` ``Method.call``), with the mock (first argument: the service).
Setting one raises the ``SystemTesting`` alert ("System mocking endpoints used"), as on
TrueNAS's own CI.

Each stands in for a look-up of hardware or of ZFS pools that the real method makes through
netlink/RDMA or truenas_pylibzfs, which do not exist here; each answers from the zfs-fuse
pool of this session (through the zfs CLI) or from loopback, which is what this machine has.
"""

from __future__ import annotations

# interface.query: netif over pyroute2 + RDMA netlink (plugins/interface/*). One interface with
# the loopback address, as the NAS address the simulator's NFS datastores name.
INTERFACE_QUERY = """
def mock(self, filters=None, options=None):
    from middlewared.utils import filter_list
    iface = {"id": "lo", "name": "lo", "type": "PHYSICAL",
             "state": {"name": "lo", "link_state": "LINK_STATE_UP",
             "aliases": [{"type": "INET", "address": "127.0.0.1", "netmask": 8}]}, "aliases": []}
    return filter_list([iface], filters or [], options or {})
"""

# pool.query: storage_volume rows extended with libzfs pool status (plugins/pool_/pool.py). The
# session's zfs-fuse pools, ONLINE: what zettarepl.get_definition checks (_hold_task_reason).
POOL_QUERY = """
def mock(self, filters=None, options=None):
    import subprocess
    from middlewared.utils import filter_list
    names = subprocess.run(["zpool", "list", "-H", "-o", "name"],
                           capture_output=True, text=True).stdout.split()
    pools = [{"id": i, "name": n, "guid": str(i), "status": "ONLINE", "healthy": True, "path": "/mnt/" + n}
             for i, n in enumerate(names, start=1)]
    return filter_list(pools, filters or [], options or {})
"""

# pool.filesystem_choices: pool.query + zfs.dataset.query (truenas_pylibzfs). Filesystems of the
# session's pools, as the stock vmware.validate_data checks a mapping's dataset against.
FILESYSTEM_CHOICES = """
def mock(self, types=None):
    import subprocess
    out = subprocess.run(["zfs", "list", "-H", "-o", "name,type"], capture_output=True, text=True).stdout
    rows = [line.split("\\t") for line in out.splitlines() if line]
    wanted = {"filesystem": "FILESYSTEM", "volume": "VOLUME"}
    return sorted(n for n, t in rows if wanted.get(t) in (types or ["FILESYSTEM", "VOLUME"]))
"""

# pool.dataset.query: truenas_pylibzfs (plugins/pool_/dataset_query_utils.py). The fields the
# plugin reads (facts.storage_facts: name, type, mountpoint), from `zfs list`.
DATASET_QUERY = """
def mock(self, filters=None, options=None):
    import subprocess
    from middlewared.utils import filter_list
    out = subprocess.run(["zfs", "list", "-H", "-o", "name,type,mountpoint"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        name, kind, mountpoint = line.split("\\t")
        rows.append({"id": name, "name": name, "pool": name.split("/")[0], "type": kind.upper(),
                     "mountpoint": None if mountpoint in ("-", "none", "legacy") else mountpoint,
                     "children": []})
    return filter_list(rows, filters or [], options or {})
"""

MOCKS: dict[str, str] = {
    "interface.query": INTERFACE_QUERY,
    "pool.query": POOL_QUERY,
    "pool.filesystem_choices": FILESYSTEM_CHOICES,
    "pool.dataset.query": DATASET_QUERY,
}
