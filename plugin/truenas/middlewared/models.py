"""The API models of the ``vmware_coord`` services.

The API-model decision. The public methods' models are defined here, then published into a
module named ``middlewared.api.vmware_coord`` that this module registers in ``sys.modules``
(``_publish``), before ``@api_method`` checks them. Why: the rule is checked on
``model.__module__`` only, and exists to keep TrueNAS's own public models in its versioned
API tree; a plugin outside the middlewared package cannot put files there without writing
into the read-only root file system again at every upgrade, and making every method private
would hide them from the API documentation and the UI's websocket user (private calls from
uid 33 are refused). ``/api/current`` uses the method's own models, so the methods work
over ``midclt`` and the websocket; the legacy versioned endpoints (``/api/v25.04.x``) do not
know these models and do not offer the methods, which is right for methods that did not
exist then. The private hook methods keep the stock models of ``plugins/vmware.py``.
"""

import sys
import types

from middlewared.api.base import BaseModel

API_MODULE = "middlewared.api.vmware_coord"
ROLE_READ, ROLE_WRITE = ["SNAPSHOT_TASK_READ"], ["SNAPSHOT_TASK_WRITE"]   # what snapshot tasks need


def _publish(*models: type) -> None:
    """Make the public models members of ``middlewared.api.vmware_coord`` (see the docstring)."""
    module = sys.modules.get(API_MODULE)
    if module is None:
        module = types.ModuleType(API_MODULE, "Public API models of the truenas-vmware-coord plugin.")
        sys.modules[API_MODULE] = module
        sys.modules["middlewared.api"].vmware_coord = module
    for model in models:
        model.__module__ = API_MODULE
        setattr(module, model.__name__, model)


class VMwareCoordPolicyEntry(BaseModel):
    id: int
    name: str
    description: str
    enabled: bool
    priority: int
    scope: dict | None
    match: dict | None
    ladder: list[str]
    options: dict | None
    requires: str | None


class VMwareCoordPolicyCreateArgs(BaseModel):
    vmware_coord_policy_create: dict
    """A policy document; schemas/policy.json is the authority on its fields."""


class VMwareCoordPolicyCreateResult(BaseModel):
    result: VMwareCoordPolicyEntry


class VMwareCoordPolicyUpdateArgs(BaseModel):
    id: int
    vmware_coord_policy_update: dict
    """The fields to change; the merged policy is validated as a whole."""


class VMwareCoordPolicyUpdateResult(BaseModel):
    result: VMwareCoordPolicyEntry


class VMwareCoordPolicyDeleteArgs(BaseModel):
    id: int


class VMwareCoordPolicyDeleteResult(BaseModel):
    result: bool


class VMwareCoordConfigEntry(BaseModel):
    id: int
    limits: dict
    begin_deadline_seconds: int
    vm_deadline_seconds: int
    end_deadline_seconds: int
    default_policy: dict
    default_libvirt_policy: dict
    reconcile_interval_seconds: int
    marker_max_age_seconds: int
    journal_retention: dict


class VMwareCoordConfigUpdateArgs(BaseModel):
    vmware_coord_config_update: dict


class VMwareCoordConfigUpdateResult(BaseModel):
    result: VMwareCoordConfigEntry


class VMwareCoordEndpointEntry(BaseModel):
    id: int
    hostname: str
    port: int
    tls: dict
    connect_timeout_seconds: int
    read_timeout_seconds: int
    limits: dict


class VMwareCoordEndpointCreateArgs(BaseModel):
    vmware_coord_endpoint_create: dict
    """``hostname`` of a VMware-Snapshots mapping plus port, tls, timeouts (schemas/endpoint.json)."""


class VMwareCoordEndpointCreateResult(BaseModel):
    result: VMwareCoordEndpointEntry


class VMwareCoordEndpointUpdateArgs(BaseModel):
    id: int
    vmware_coord_endpoint_update: dict


class VMwareCoordEndpointUpdateResult(BaseModel):
    result: VMwareCoordEndpointEntry


class VMwareCoordEndpointDeleteArgs(BaseModel):
    id: int


class VMwareCoordEndpointDeleteResult(BaseModel):
    result: bool


class VMwareCoordEndpointFingerprintArgs(BaseModel):
    hostname: str
    port: int = 443


class VMwareCoordEndpointFingerprintResult(BaseModel):
    result: dict


class VMwareCoordEndpointPinArgs(BaseModel):
    hostname: str
    """The host of a VMware-Snapshots mapping."""
    sha256_fingerprint: str
    """What the host must present now, e.g. from an alert or vmware_coord.endpoint.fingerprint."""
    port: int = 443


class VMwareCoordEndpointPinResult(BaseModel):
    result: VMwareCoordEndpointEntry


class VMwareCoordDatasetFlagsArgs(BaseModel):
    pass


class VMwareCoordDatasetFlagsResult(BaseModel):
    result: list[str]


class VMwareCoordClearDatasetFlagsArgs(BaseModel):
    pass


class VMwareCoordClearDatasetFlagsResult(BaseModel):
    result: list[str]


class VMwareCoordPlanArgs(BaseModel):
    dataset: str
    recursive: bool = False
    exclude: list[str] = []
    draft: dict | None = None   # {"policy": <policy document>, "id": <policy id> | None}


class VMwareCoordPlanResult(BaseModel):
    result: dict


class VMwareCoordRunArgs(BaseModel):
    dataset: str
    recursive: bool = False
    name: str | None = None


class VMwareCoordRunResult(BaseModel):
    result: dict


class VMwareCoordReconcileArgs(BaseModel):
    pass


class VMwareCoordReconcileResult(BaseModel):
    result: dict


class VMwareCoordRunsArgs(BaseModel):
    limit: int = 50


class VMwareCoordRunsResult(BaseModel):
    result: list[dict]


class VMwareCoordManifestArgs(BaseModel):
    run: str
    """A run id, or a snapshot name ``dataset@name``."""


class VMwareCoordManifestResult(BaseModel):
    result: dict | None


class VMwareCoordCheckPrivilegesArgs(BaseModel):
    mapping_id: int
    """The id of a VMware-Snapshots mapping (``vmware.query``)."""


class VMwareCoordCheckPrivilegesResult(BaseModel):
    result: dict


class VMwareCoordRestoreSnapshotsArgs(BaseModel):
    dataset: str
    """A dataset; its coordinated snapshots are listed, newest first."""


class VMwareCoordRestoreSnapshotsResult(BaseModel):
    result: list[dict]


class VMwareCoordRestorePreviewArgs(BaseModel):
    snapshot: str
    """A coordinated ZFS snapshot, ``dataset@name``."""
    host: str | None = None
    """The ESXi host to restore on; default: each VM's own, else one that mounts this NAS."""


class VMwareCoordRestorePreviewResult(BaseModel):
    result: dict


class VMwareCoordRestoreRequest(BaseModel):
    snapshot: str
    """A coordinated ZFS snapshot, ``dataset@name``."""
    vm: str
    """The VM's name in the snapshot's manifest."""
    new_name: str | None = None
    """Default: ``<vm>-restored-<restore id>``."""
    host: str | None = None
    power_on: bool = False
    connect_network: bool = False
    """Whether the copy's NICs connect at power-on (off: it must not take its original's address)."""


class VMwareCoordRestoreArgs(BaseModel):
    vmware_coord_restore: VMwareCoordRestoreRequest


class VMwareCoordRestoreResult(BaseModel):
    result: dict


class VMwareCoordRestoreListArgs(BaseModel):
    limit: int = 50


class VMwareCoordRestoreListResult(BaseModel):
    result: list[dict]


class VMwareCoordRestoreGetArgs(BaseModel):
    restore_id: str


class VMwareCoordRestoreGetResult(BaseModel):
    result: dict


class VMwareCoordRestoreCleanupArgs(BaseModel):
    restore_id: str
    force: bool = False
    """Power the copy off when it is on (else a copy that is on is refused: it may be in use)."""


class VMwareCoordRestoreCleanupResult(BaseModel):
    result: dict


class VMwareCoordRestoreAttachDiskArgs(BaseModel):
    restore_id: str
    disk: int
    """The copy's disk, by its position (0 is the first)."""
    to: str
    """The VM to attach it to, on the copy's host."""
    writable: bool = False
    """Off: attached independent non-persistent, so what the VM writes is thrown away."""


class VMwareCoordRestoreAttachDiskResult(BaseModel):
    result: dict


_publish(*[obj for name, obj in list(globals().items())
           if name.startswith("VMwareCoord") and isinstance(obj, type) and issubclass(obj, BaseModel)])
