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
One more stands in for the single step of an API-key login that TrueNAS's own PAM module
``pam_tdb.so`` does (not in Debian): see ``LIBPAM_AUTHENTICATE``.
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

# auth.libpam_authenticate for an API key (plugins/auth_/authenticate.py:28-66): the PAM stack
# /etc/pam.d/middleware-api-key begins with `auth [success=1 default=die] pam_tdb.so`
# (etc_files/pam.d/middleware-api-key.mako:17), TrueNAS's own C module (not in Debian), which
# checks "<id>-<key>" against the pbkdf2-sha512 hash that api_key.create stored
# (utils/crypto.py:84-94) for that user, unrevoked and unexpired. This does that one check on the
# row the real api_key.create wrote, then runs the real authenticator with the PAM stack of
# /etc/pam.d/middleware-unix (Debian's pam_access, pam_unix account, the middleware-session
# stack), so the handle is brought to LOGIN by the real code and login() opens a real PAM session
# and utmp entry. Every other login (passwords) goes to the real method.
LIBPAM_AUTHENTICATE = """
from middlewared.service import pass_app

@pass_app(require=True)
def mock(self, app, username, password):
    import base64, hashlib, hmac, pam
    from datetime import datetime, timezone
    from middlewared.utils.account.authenticator import AccountFlag, MiddlewarePamFile
    handle = app.authentication_context.pam_hdl
    if handle is None or handle.truenas_state.service is not MiddlewarePamFile.API_KEY:
        return self.libpam_authenticate(app, username, password)
    refused = {"code": pam.PAM_AUTH_ERR, "reason": "Authentication failure", "user_info": None}
    key_id, _, secret = password.partition("-")
    rows = self.middleware.call_sync("api_key.query", [["id", "=", int(key_id)]]) if key_id.isdigit() else []
    if not rows or rows[0]["username"] != username or rows[0]["revoked"]:
        return refused
    if rows[0]["expires_at"] and rows[0]["expires_at"] <= datetime.now(timezone.utc):
        return {"code": pam.PAM_CRED_EXPIRED, "reason": "Api key is expired.", "user_info": None}
    _, algorithm, rounds, salt, digest = rows[0]["keyhash"].split("$")
    computed = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt), int(rounds))
    if algorithm != "pbkdf2-sha512" or not hmac.compare_digest(computed, base64.b64decode(digest)):
        return refused
    handle.truenas_state.service = MiddlewarePamFile.UNIX
    try:
        response = handle.authenticate(username, "", app.origin)
    finally:
        handle.truenas_state.service = MiddlewarePamFile.API_KEY
    user_info = response.user_info
    if response.code == pam.PAM_SUCCESS:
        handle.truenas_state.passwd["account_attributes"].append(AccountFlag.API_KEY)
        user_info = handle.truenas_user_obj
    return {"code": response.code, "reason": response.reason, "user_info": user_info}
"""

MOCKS: dict[str, str] = {
    "interface.query": INTERFACE_QUERY,
    "pool.query": POOL_QUERY,
    "pool.filesystem_choices": FILESYSTEM_CHOICES,
    "pool.dataset.query": DATASET_QUERY,
    "auth.libpam_authenticate": LIBPAM_AUTHENTICATE,
}
