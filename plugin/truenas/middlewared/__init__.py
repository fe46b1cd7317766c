"""What middlewared loads: the only modules of this package that import ``middlewared``.

``tables`` (datastore models), ``models`` (API models), ``services`` (the ``vmware_coord``
services; ``restore_methods``, the restore part of ``vmware_coord``), ``alert_classes`` and
``takeover`` (the stock hooks' replacement). Everything they delegate to lives in
``truenas_vmware_coord.truenas`` and is testable without middlewared.
``truenas_vmware_coord.vmware_coord`` gathers them for the loader.

What was verified in the TrueNAS source (truenas/middleware at tag TS-25.10.6, paths under
``src/middlewared/middlewared/``; zettarepl at its TS-25.10.x tags):

- ``plugins/vmware.py``: ``VMWareService(CRUDService)``, Config ``datastore='storage.vmwareplugin'``,
  ``cli_namespace='storage.vmware'``, ``entry=VMWareEntry``, ``role_prefix='SNAPSHOT_TASK'``;
  table ``storage_vmwareplugin(id, hostname, username, password EncryptedText, filesystem,
  datastore, state JSON)``. Hooks: ``periodic_snapshot_task_begin(self, task_id)`` @private,
  returns ``{"dataset", "qs"}`` or None; ``periodic_snapshot_task_proceed(self, job, context)``
  and ``periodic_snapshot_task_end(self, job, context)`` are ``@api_method(<private models
  defined in that module>, private=True)`` over ``@job()``; ``snapshot_begin(self, dataset,
  recursive)`` and ``snapshot_end(self, context)`` @private. ``setup`` registers the network
  activity ``'vmware'`` ("VMware Snapshots"); the hooks call
  ``network.general.will_perform_activity('vmware')``. ``plugins/vmware_/snapshot_delete.py``
  adds a second ``VMWareService`` part (pending deletes), left alone here.
- ``plugins/zettarepl.py`` ``ZettareplProcess._observer``: on ``PeriodicSnapshotTaskStart``
  it calls over a local client ``vmware.periodic_snapshot_task_begin(task_id)``, then, if that
  returned something, ``vmware.periodic_snapshot_task_proceed(ctx, job=True)``; it returns
  ``message.response(properties={"freenas:vmsynced": "Y"})`` only if ``context["vmsynced"]``
  (no other property is passed); on ``PeriodicSnapshotTaskSuccess``/``Error`` it calls
  ``vmware.periodic_snapshot_task_end(context, job=True)``. zettarepl's ``notify`` swallows
  observer exceptions, and ``zettarepl.py`` creates the snapshot with ``-o k=v`` for the
  returned properties. The observer is serial: a slow begin delays every later task.
- ``plugins/zfs_/snapshot.py`` ``create``: with ``vmware_sync`` it calls
  ``vmware.snapshot_begin(dataset, recursive)`` before and ``vmware.snapshot_end(ctx)`` in a
  ``finally`` after the snapshot, and sets ``freenas:vmsynced=Y`` on the *dataset* when
  ``ctx["vmsynced"]``; ``pool.snapshot.create`` (``plugins/pool_/snapshot.py``) delegates to it.
  ``properties`` are passed at creation; ``zfs.snapshot.update`` takes
  ``user_properties_update``.
- ``service/base.py``, ``decorators.py``, ``crud_service.py``, ``config_service.py``,
  ``compound_service.py``, ``utils/plugins.py``, ``main.py``: Config keys and defaults; public
  methods need ``@api_method`` with models named ``{Service}{Method}Args/Result``; public
  CRUD/Config services need ``role_prefix`` and ``entry``; ``query``/``get_instance``/
  ``config`` models are generated with ``__module__ = entry.__module__``; one namespace over
  several classes becomes a ``CompoundService`` and a duplicated method name is a
  ``RuntimeError`` at startup; all plugin modules are imported, then services instantiated,
  then the API tables are built (method objects captured), then every ``setup()`` runs in
  order without error handling.
- ``api/base/decorator.py`` ``check_model_module``: models of public methods must have a
  ``__module__`` under ``middlewared.api.``, models of private methods must not; the result
  model has exactly one field ``result``; public non-CRUD methods need ``roles``.
  ``api/base/server/method.py``: the current API (``/api/current``, what ``midclt`` uses)
  takes the models straight from the method object; only the legacy versioned APIs look
  models up by name in ``middlewared.api.vXX_YY_Z`` (``LegacyAPIMethod``).
- ``alert/base.py``: ``AlertClass`` subclasses named ``*AlertClass`` register themselves;
  ``OneShotAlertClass.create/delete``; ``Alert(klass, args, key=...)``. ``plugins/alert.py``:
  ``oneshot_create``/``oneshot_delete`` are jobs; same class and key replaces an alert.
- ``plugins/datastore/*``: table = datastore name with '.' -> '_' from ``sa.Model``'s
  metadata; ``datastore.execute`` runs raw SQL (how this plugin creates its tables, since
  alembic migrations only run at install/upgrade). ``plugins/network_/activity.py``:
  ``can_perform_activity`` / ``will_perform_activity``.
  ``plugins/system_dataset/utils.py``: ``SYSDATASET_PATH = '/var/db/system'``.
- ``plugins/nfs.py`` ``SharingNFSService`` (namespace ``sharing.nfs``, models
  ``api/v25_10_0/nfs.py``): ``create(data)`` with ``path``, ``hosts`` (names must resolve
  through ``dnsclient.forward_lookup``, else "Unable to resolve host"), ``maproot_user``/
  ``maproot_group``, ``comment``; the path must be in a pool; reloads NFS only when the
  service runs (``service/service_mixin.py``); ``delete(id)`` of an unknown id is
  ``InstanceNotFound``. ``etc_files/exports.mako``: maproot uid and gid 0 is ``no_root_squash``.
  ``job.py`` ``Job.__encode__``: a job's ValidationErrors reach ``core.get_jobs`` as
  ``exc_info`` ``{"type": "VALIDATION", "extra": [[attribute, message, errno], ...]}``.
"""
