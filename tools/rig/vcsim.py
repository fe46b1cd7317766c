"""Build and run the govmomi vSphere simulator (vcsim) from Debian's packages.

Debian ships govmomi 0.24.2's ``simulator`` library but no ``vcsim`` program, so the
launcher in ``tools/vcsim/`` is built here, offline, in GOPATH mode with Debian's Go. The
library is never modified: patched copies of its files and the rig's additions are laid
over it with ``go build -overlay``. Every patch must apply exactly once; when the library
changes under it the build fails loudly instead of building something else.

The binary is cached under ``.cache/vcsim/<key>/`` and rebuilt only when the launcher, a
patch, the library or Go changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src/github.com/vmware/govmomi"
SIMULATOR = GOVMOMI / "simulator"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tools" / "vcsim"
CACHE = Path(os.environ.get("VMWARE_COORD_CACHE", ROOT / ".cache"))

# WaitForUpdatesEx lets updates accumulate for 250 ms before it answers; vCenter
# answers as soon as a change is there. 10 ms keeps task waiting from being measured as a
# simulator artifact. The "stock-wait" variant leaves it out, so the bench can show that
# task watching does not depend on either timing.
PROMPT_WAIT = (
    "property_collector.go",
    "ticker := time.NewTicker(250 * time.Millisecond) // allow for updates to accumulate",
    "ticker := time.NewTicker(10 * time.Millisecond) // vCenter answers promptly",
)

# (library file, original text, replacement). Each original must occur exactly once.
PATCHES: tuple[tuple[str, str, str], ...] = (
    # Bug 1 (fixed upstream in 0.34): the remove/revert task's entity must be the VM, or
    # pyVmomi cannot read task.info ("For 'entity' expected type vim.ManagedEntity").
    (
        "snapshot.go",
        'task := CreateTask(v, "removeSnapshot", func(t *Task) (types.AnyType, types.BaseMethodFault) {\n'
        "\t\tvar changes []types.PropertyChange\n\n"
        "\t\tvm := Map.Get(v.Vm).(*VirtualMachine)\n",
        'task := CreateTask(v.Vm, "removeSnapshot", func(t *Task) (types.AnyType, types.BaseMethodFault) {\n'
        "\t\tvar changes []types.PropertyChange\n\n"
        "\t\tvm := Map.Get(v.Vm).(*VirtualMachine)\n"
        '\t\tif f := coordInjectedFault(vm, "RemoveSnapshot_Task"); f != nil {\n'
        "\t\t\treturn nil, f\n"
        "\t\t}\n",
    ),
    (
        "snapshot.go",
        'task := CreateTask(v, "revertToSnapshot",',
        'task := CreateTask(v.Vm, "revertToSnapshot",',
    ),
    (
        "snapshot.go",
        "\t\t\tReturnval: task.Run(),\n\t\t},\n\t}\n}\n\n"
        "func (v *VirtualMachineSnapshot) RevertToSnapshotTask(",
        '\t\t\tReturnval: coordRun(Map.Get(v.Vm).(*VirtualMachine), "RemoveSnapshot_Task", task, nil),\n'
        "\t\t},\n\t}\n}\n\n"
        "func (v *VirtualMachineSnapshot) RevertToSnapshotTask(",
    ),
    # Bug 2 (fixed upstream in 0.36): fetching an unset property (vm.snapshot of a VM
    # without snapshots) indexed an empty MissingSet and dropped the connection.
    (
        "property_collector.go",
        "\tif len(obj.PropSet) == 0 {\n\t\tfault := obj.MissingSet[0].Fault\n",
        "\tif len(obj.PropSet) == 0 {\n"
        "\t\tif len(obj.MissingSet) == 0 {\n"
        "\t\t\tbody.Res = &internal.FetchResponse{}\n"
        "\t\t\treturn body\n"
        "\t\t}\n"
        "\t\tfault := obj.MissingSet[0].Fault\n",
    ),
    # extraConfig as vSphere does it: a key set again replaces its value, an empty value
    # removes it (0.24.2 appends duplicates, so a fault could never be cleared).
    (
        "virtual_machine.go",
        "\t\tif key == val.Key {\n\t\t\tvm.Config.ExtraConfig = append(vm.Config.ExtraConfig, c)\n",
        "\t\tif key == val.Key {\n\t\t\tvm.Config.ExtraConfig = coordSetExtraConfig(vm.Config.ExtraConfig, c)\n",
    ),
    # 0.24.2 leaves vm.capability all false; vCenter reports what the VM supports.
    (
        "virtual_machine.go",
        "\tvm.Guest = &types.GuestInfo{}\n",
        "\tvm.Guest = &types.GuestInfo{}\n"
        "\tvm.Capability.SnapshotOperationsSupported = true\n"
        "\tvm.Capability.MultipleSnapshotsSupported = true\n"
        "\tvm.Capability.QuiescedSnapshotsSupported = true\n"
        "\tvm.Capability.MemorySnapshotsSupported = true\n"
        "\tvm.Capability.RevertToSnapshotSupported = true\n",
    ),
    PROMPT_WAIT,
    # The call counter behind /_stats.
    (
        "simulator.go",
        "func (s *Service) call(ctx *Context, method *Method) soap.HasFault {\n",
        "func (s *Service) call(ctx *Context, method *Method) soap.HasFault {\n"
        "\tif CoordCallHook != nil {\n\t\tCoordCallHook(method.Name)\n\t}\n",
    ),
    # CreateSnapshot_Task through the rig's rules (faults, strict mode, async, Ex).
    (
        "virtual_machine.go",
        "func (vm *VirtualMachine) CreateSnapshotTask(req *types.CreateSnapshot_Task) soap.HasFault {\n"
        '\ttask := CreateTask(vm, "createSnapshot", func(t *Task) (types.AnyType, types.BaseMethodFault) {\n',
        "func (vm *VirtualMachine) CreateSnapshotTask(req *types.CreateSnapshot_Task) soap.HasFault {\n"
        "\treturn &methods.CreateSnapshot_TaskBody{\n"
        "\t\tRes: &types.CreateSnapshot_TaskResponse{\n"
        '\t\t\tReturnval: vm.coordCreateSnapshot("CreateSnapshot_Task", req),\n'
        "\t\t},\n\t}\n}\n\n"
        "func (vm *VirtualMachine) coordCreateSnapshot(method string, req *types.CreateSnapshot_Task) types.ManagedObjectReference {\n"
        '\ttask := CreateTask(vm, "createSnapshot", func(t *Task) (types.AnyType, types.BaseMethodFault) {\n'
        "\t\tif f := coordCreateFault(vm, method, req.Memory); f != nil {\n"
        "\t\t\treturn nil, f\n"
        "\t\t}\n",
    ),
    (
        "virtual_machine.go",
        "\t\t\tQuiesced:        req.Quiesce,\n",
        "\t\t\tQuiesced:        coordQuiesced(vm, req.Quiesce),\n",
    ),
    (
        "virtual_machine.go",
        "\treturn &methods.CreateSnapshot_TaskBody{\n"
        "\t\tRes: &types.CreateSnapshot_TaskResponse{\n"
        "\t\t\tReturnval: task.Run(),\n"
        "\t\t},\n\t}\n}\n",
        "\treturn coordRun(vm, method, task, vm)\n}\n",
    ),
    # The .vmsd double (coord_vmsd.go): the snapshot tree and devices written next to the
    # .vmx on every change of the tree, read back by RegisterVM_Task.
    (
        "virtual_machine.go",
        "\t\tMap.Update(vm, changes)\n\n\t\treturn snapshot.Self, nil\n",
        "\t\tMap.Update(vm, changes)\n\t\tcoordWriteVmsd(vm)\n\n\t\treturn snapshot.Self, nil\n",
    ),
    (
        "snapshot.go",
        "\t\t\tMap.Get(req.This).(*VirtualMachineSnapshot).removeSnapshotFiles(ctx)\n\n"
        "\t\t\tMap.Update(vm, changes)\n",
        "\t\t\tMap.Get(req.This).(*VirtualMachineSnapshot).removeSnapshotFiles(ctx)\n\n"
        "\t\t\tMap.Update(vm, changes)\n\t\t\tcoordWriteVmsd(vm)\n",
    ),
    (
        "snapshot.go",
        '\t\t\t\t{Name: "snapshot.currentSnapshot", Val: v.Self},\n\t\t\t})\n',
        '\t\t\t\t{Name: "snapshot.currentSnapshot", Val: v.Self},\n\t\t\t})\n\t\t\tcoordWriteVmsd(vm)\n',
    ),
    (
        "folder.go",
        "\treturn create.Info.Result, nil\n}\n",
        "\treturn coordRegistered(create.Info.Result, c.req.Path)\n}\n",
    ),
    # RegisterVM_Task of a VM under a new name: ESXi makes a missing .nvram afresh.
    (
        "virtual_machine.go",
        "\t\tf, err := vm.createFile(file.spec, file.name, register)\n",
        "\t\tf, err := coordRegisterFile(vm, file.spec, file.name, register)\n",
    ),
    # The "moved or copied?" question on a copied VM's first power-on.
    (
        "virtual_machine.go",
        "\trunner := &powerVMTask{vm, types.VirtualMachinePowerStatePoweredOn, ctx}\n",
        "\tif body := coordQuestionPowerOn(ctx, vm); body != nil {\n\t\treturn body\n\t}\n"
        "\trunner := &powerVMTask{vm, types.VirtualMachinePowerStatePoweredOn, ctx}\n",
    ),
    # CreateNasDatastore with a datastore name as localPath, as ESXi takes it.
    (
        "host_datastore_system.go",
        "\t\t\tUrl: c.Spec.LocalPath,\n",
        "\t\t\tUrl: coordNasURL(c.Spec),\n",
    ),
    # The iSCSI / VMFS double (coord_vmfs.go): a rescan sees the rig's iSCSI target.
    (
        "host_storage_system.go",
        "func (s *HostStorageSystem) RescanAllHba(ctx *Context, _ *types.RescanAllHba) soap.HasFault {\n",
        "func (s *HostStorageSystem) RescanAllHba(ctx *Context, _ *types.RescanAllHba) soap.HasFault {\n"
        "\tcoordRescanLuns(ctx, s)\n",
    ),
    (
        "host_storage_system.go",
        "func (s *HostStorageSystem) RescanVmfs(*Context, *types.RescanVmfs) soap.HasFault {\n",
        "func (s *HostStorageSystem) RescanVmfs(ctx *Context, _ *types.RescanVmfs) soap.HasFault {\n"
        "\tcoordRescanLuns(ctx, s)\n",
    ),
)

ADDED_FILES = {"zz_coord_hooks.go": "coord_hooks.go", "zz_coord_vmsd.go": "coord_vmsd.go",
               "zz_coord_vmfs.go": "coord_vmfs.go"}

# Build variants: the patches each leaves out. "rig" is what every test runs against.
VARIANTS: dict[str, tuple[tuple[str, str, str], ...]] = {"rig": (), "stock-wait": (PROMPT_WAIT,)}


class RigError(RuntimeError):
    """The simulator could not be built or started; the message says why."""


def _go_env(gocache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOPATH=str(GOPATH), GO111MODULE="off", GOPROXY="off", GOFLAGS="",
               GOCACHE=str(gocache), CGO_ENABLED="0")
    return env


def apply_patches(out_dir: Path, variant: str = "rig") -> dict[str, str]:
    """Write patched copies of library files to out_dir; return the overlay map."""
    patched: dict[str, str] = {}
    for name, old, new in (p for p in PATCHES if p not in VARIANTS[variant]):
        text = patched.get(name) or (SIMULATOR / name).read_text()
        count = text.count(old)
        if count != 1:
            raise RigError(
                f"vcsim patch for simulator/{name} found its anchor {count} times (expected 1): "
                f"govmomi changed; update PATCHES in tools/rig/vcsim.py. Anchor: {old[:80]!r}")
        patched[name] = text.replace(old, new)
    replace = {}
    for name, text in patched.items():
        (out_dir / name).write_text(text)
        replace[str(SIMULATOR / name)] = str(out_dir / name)
    for added, src in ADDED_FILES.items():
        target = SIMULATOR / added
        if target.exists():
            raise RigError(f"{target} exists in the library; the overlay would hide it")
        shutil.copyfile(SOURCE / src, out_dir / added)
        replace[str(target)] = str(out_dir / added)
    return replace


def _build_key(variant: str) -> str:
    h = hashlib.sha256(variant.encode())
    for path in sorted(SOURCE.glob("*.go")) + [Path(__file__)]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for name in sorted({p[0] for p in PATCHES}):
        h.update((SIMULATOR / name).read_bytes())
    h.update(subprocess.run(["go", "version"], capture_output=True, text=True).stdout.encode())
    return h.hexdigest()[:16]


def build(variant: str = "rig") -> Path:
    """Build the launcher (a ``VARIANTS`` name) if needed and return the binary's path."""
    if not SIMULATOR.is_dir() or shutil.which("go") is None:
        raise RigError("Debian's golang-go and golang-github-vmware-govmomi-dev are not "
                       "installed (run ./run setup)")
    out = CACHE / "vcsim" / _build_key(variant)
    binary = out / "vcsim"
    if binary.exists():
        return binary
    work = out.with_suffix(".tmp")
    shutil.rmtree(work, ignore_errors=True)
    (work / "overlay").mkdir(parents=True)
    (work / "src").mkdir()
    overlay = {"Replace": apply_patches(work / "overlay", variant)}
    (work / "overlay.json").write_text(json.dumps(overlay, indent=1))
    shutil.copyfile(SOURCE / "main.go", work / "src" / "main.go")
    started = time.monotonic()
    proc = subprocess.run(
        ["go", "build", "-overlay", str(work / "overlay.json"), "-o", str(work / "vcsim"), "."],
        cwd=work / "src", env=_go_env(CACHE / "gocache"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RigError(f"building vcsim failed:\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    print(f"built vcsim ({variant}) in {time.monotonic() - started:.1f}s: {binary}", file=sys.stderr)
    return binary


@dataclasses.dataclass
class Simulator:
    """A running simulator, stopped by its own pid."""

    url: str                  # https://127.0.0.1:PORT/sdk
    pid: int
    sha256: str               # the certificate's SHA-256 fingerprint, AA:BB:...
    process: subprocess.Popen
    username: str = "user"
    password: str = "pass"
    _stats: StatsClient | None = dataclasses.field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def ssl_context(self) -> ssl.SSLContext:
        return pinned_context(self.host, self.port, self.sha256)

    def stats(self, reset: bool = False) -> dict[str, int]:
        """Per-method SOAP call counts since the last reset."""
        if self._stats is None:
            self._stats = StatsClient(self.host, self.port, self.sha256)
        return self._stats.read(reset)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def pinned_context(host: str, port: int, sha256: str) -> ssl.SSLContext:
    """Trust exactly the certificate the launcher announced, the way the product pins one."""
    from truenas_vmware_coord.vsphere.tls import VerifyMode, context_for

    return context_for(f"vcsim {host}:{port}", host, port, VerifyMode.PINNED, sha256, timeout=10)


class StatsClient:
    """The launcher's /_stats over one kept-alive, pinned HTTPS connection (cheap enough to
    read inside a timed phase)."""

    def __init__(self, host: str, port: int, sha256: str) -> None:
        self._conn = http.client.HTTPSConnection(host, port, context=pinned_context(host, port, sha256),
                                                 timeout=10)

    def read(self, reset: bool = False) -> dict[str, int]:
        for attempt in range(2):
            try:
                self._conn.request("GET", "/_stats?reset=1" if reset else "/_stats")
                return json.loads(self._conn.getresponse().read())
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()   # the next request reconnects
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def __call__(self) -> dict[str, int]:
        return self.read()


_READY = re.compile(r"^vcsim ready url=(\S+) pid=(\d+) sha256=(\S+)$")


def start(*args: str, username: str = "user", password: str = "pass",
          tmpdir: str | None = None, timeout: float = 120, variant: str = "rig") -> Simulator:
    """Start the simulator with launcher flags (``"-vm", "10"``…) on 127.0.0.1.

    The model's VM files go to ``tmpdir`` (default: /dev/shm, where writing a thousand
    .vmx files takes a second instead of several). ``variant``: a ``VARIANTS`` build.
    """
    binary = build(variant)
    env = dict(os.environ)
    env["TMPDIR"] = tmpdir or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    cmd = [str(binary), "-l", "127.0.0.1:0", "-username", username, "-password", password, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            raise RigError(f"vcsim exited with {code} before it was ready: {' '.join(args)}")
        match = _READY.match(line.strip())
        if match:
            return Simulator(url=match[1], pid=int(match[2]), sha256=match[3], process=proc,
                             username=username, password=password)
        if time.monotonic() > deadline:
            proc.kill()
            raise RigError("vcsim did not become ready in time")


if __name__ == "__main__":
    print(build(*sys.argv[1:2]))
