// Test-rig additions to govmomi 0.24.2's simulator package: what a restore from a ZFS
// clone of a zvol that backs a VMFS datastore needs (added through `go build -overlay`
// like coord_hooks.go; two patches in tools/rig/vcsim.py make the rescans call it).
//
// Each is a TEST DOUBLE of one VMware behaviour that 0.24.2 does not have, no more:
//
//   - iSCSI LUNs. The launcher's -iscsi DIR stands for the NAS's iSCSI target as ESXi's
//     software initiator discovers it (every host is logged in to it): one DIR/<id>.json
//     per LUN, {"naa": "<32 hex>", "device": "/abs/dir"}, the directory standing for the
//     block device (the zvol). At start and on RescanAllHba / RescanVmfs a host lists one
//     HostScsiDisk per LUN in config.storageDevice.scsiLun and in its storage system's
//     storageDeviceInfo.scsiLun (0.24.2 lists only its two fixed local disks); a LUN whose
//     file is gone disappears at the next rescan, as a LUN unmapped on the target does.
//   - The VMFS header. `<device>/.vcsim-vmfs.json` {"uuid", "label", "naa"} stands for the
//     volume's on-disk signature: its uuid and label, and the device it was formatted on
//     (or resignatured for); the device directory's other contents are the volume's files.
//   - CreateVmfsDatastore (and QueryVmfsDatastoreCreateOptions, to build its spec):
//     formats a LUN (writes a fresh header) and mounts it as a VMFS datastore on every
//     host that sees the LUN, through the simulator's own datastore creation, so its
//     files are the device directory (info.url, 0.24.2's convention for where a
//     datastore's files are) and the .vmsd double of coord_vmsd.go works on it.
//   - Snapshot volumes. A LUN whose header names another device is a copy (a zvol clone,
//     an array snapshot): ESXi does not mount it but reports it from
//     QueryUnresolvedVmfsVolume(s), and ResignatureUnresolvedVmfsVolume_Task gives it a
//     new uuid and label "snap-<8 hex>-<label>" and mounts it on the calling host.
//   - Datastore.Rename_Task and RenameDatastore, which 0.24.2 lacks for datastores: a
//     duplicate name in the datacenter is refused with DuplicateName; a VMFS datastore's
//     volume label (in its header) is renamed with it, as ESXi relabels the volume.
//   - UnmountVmfsVolume, DetachScsiLun and AttachScsiLun, which 0.24.2 lacks: unmount is
//     refused while a VM of this host has files on the volume, detach while a volume on
//     the LUN is mounted on this host; a detached LUN is listed with operationalState
//     ["off"], yields no unresolved volume and can be neither formatted nor resignatured.
//
// Not modelled: multi-extent volumes, force-mount (ResolveMultipleUnresolvedVmfsVolumes),
// MountVmfsVolume, scsiTopology / multipathInfo entries for the LUNs, RescanHba, and a
// LUN that vanishes under a mounted volume (the datastore stays as it was).

package simulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CoordIscsiDir is the rig's iSCSI target (the -iscsi flag), "" when there is none.
var CoordIscsiDir string

const (
	coordVmfsHeaderFile = ".vcsim-vmfs.json"
	coordDisksDir       = "/vmfs/devices/disks/"
	coordVmfsBlockSize  = 1 << 20 // a VMFS 6 file block
	coordSectorSize     = 512
	coordFirstSector    = 2048 // where ESXi starts the VMFS partition
	// The GPT partition type ESXi gives a VMFS partition.
	coordVmfsPartitionType = "AA31E02A400F11DB9590000C2911D1B8"
)

var coordNaaPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

type coordLunFile struct {
	Naa    string `json:"naa"`
	Device string `json:"device"`
}

type coordVmfsHeader struct {
	Uuid  string `json:"uuid"`
	Label string `json:"label"`
	Naa   string `json:"naa"`
}

type coordLun struct {
	naa, device string
	detached    bool // per host, as ESXi keeps it
}

// coordHostView is one host's view of the target as of its last rescan.
type coordHostView struct {
	luns       map[string]*coordLun // naa -> LUN
	baseInfo   []types.BaseScsiLun  // the model's own disks, kept in front of the LUNs
	baseConfig []types.BaseScsiLun
}

// coordVmfsMu serializes the double's changes. Objects of other hosts than the called
// one are changed without their own lock (a call on them may be waiting for this mutex),
// as the launcher's own setup does.
var coordVmfsMu sync.Mutex

var coordHostViews = map[types.ManagedObjectReference]*coordHostView{}

// coordErr is a fault with the message a client shows (Task.Run keeps only the type name).
type coordErr struct {
	fault types.BaseMethodFault
	msg   string
}

func coordFail(fault types.BaseMethodFault, format string, args ...interface{}) *coordErr {
	return &coordErr{fault: fault, msg: fmt.Sprintf(format, args...)}
}

// coordRunTask runs a task whose fault carries coordErr's message.
func coordRunTask(task *Task, run func() (types.AnyType, *coordErr)) types.ManagedObjectReference {
	var failed *coordErr
	task.Execute = func(*Task) (types.AnyType, types.BaseMethodFault) {
		res, err := run()
		if err != nil {
			failed = err
			return nil, err.fault
		}
		return res, nil
	}
	ref := task.Run()
	if failed != nil {
		Map.Update(task, []types.PropertyChange{{Name: "info.error",
			Val: types.LocalizedMethodFault{Fault: failed.fault, LocalizedMessage: failed.msg}}})
	}
	return ref
}

func coordRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// coordNewVmfsUuid makes a uuid of VMFS's form: seconds since 1970, then random parts
// (ESXi uses a timestamp counter and the host's MAC address).
func coordNewVmfsUuid() string {
	return fmt.Sprintf("%08x-%s-%s-%s", time.Now().Unix(), coordRandomHex(4), coordRandomHex(2), coordRandomHex(6))
}

// coordLunUuid is the ScsiLun.uuid of a LUN: stable per naa, as ESXi derives it from the
// device's identifiers.
func coordLunUuid(naa string) string { return "0200000000" + naa + "695343534920" }

func coordDevicePath(naa string) string { return coordDisksDir + "naa." + naa }

// coordCapacity is the size of the "block device": the file system the directory is on.
func coordCapacity(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks == 0 {
		return 1 << 40
	}
	return int64(st.Blocks) * int64(st.Bsize)
}

func coordVmfsBlocks(dir string) int32 {
	blocks := coordCapacity(dir) / coordVmfsBlockSize
	if blocks > math.MaxInt32 {
		return math.MaxInt32
	}
	if blocks < 2 {
		return 2
	}
	return int32(blocks)
}

// coordReadTarget reads the target's LUNs: naa -> device directory.
func coordReadTarget() map[string]string {
	luns := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(CoordIscsiDir, "*.json"))
	sort.Strings(files)
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			continue // removed while the target was read
		}
		var lun coordLunFile
		if err = json.Unmarshal(body, &lun); err != nil || !coordNaaPattern.MatchString(lun.Naa) ||
			!filepath.IsAbs(lun.Device) {
			log.Printf("iscsi: %s is no {\"naa\": 32 lowercase hex, \"device\": absolute dir}", file)
			continue
		}
		if fi, err := os.Stat(lun.Device); err != nil || !fi.IsDir() {
			log.Printf("iscsi: %s: device %s is no directory", file, lun.Device)
			continue
		}
		if _, dup := luns[lun.Naa]; dup {
			log.Printf("iscsi: %s: naa %s is another LUN's", file, lun.Naa)
			continue
		}
		luns[lun.Naa] = lun.Device
	}
	return luns
}

// coordReadHeader is the VMFS header on a device, or nil if it holds no VMFS.
func coordReadHeader(device string) *coordVmfsHeader {
	body, err := os.ReadFile(filepath.Join(device, coordVmfsHeaderFile))
	if err != nil {
		return nil
	}
	var h coordVmfsHeader
	if err = json.Unmarshal(body, &h); err != nil || h.Uuid == "" {
		log.Printf("iscsi: %s: no valid VMFS header", device)
		return nil
	}
	return &h
}

func coordWriteHeader(device string, h coordVmfsHeader) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tmp := filepath.Join(device, coordVmfsHeaderFile+".tmp")
	if err = os.WriteFile(tmp, body, 0600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(device, coordVmfsHeaderFile))
}

func coordHostOf(ref types.ManagedObjectReference) *HostSystem {
	host, _ := Map.Get(ref).(*HostSystem)
	return host
}

// coordView is a host's view, made on first use (coordVmfsMu held). The storage system
// gets a storageDeviceInfo of its own: 0.24.2 shares one template between all hosts.
func coordView(host *HostSystem) *coordHostView {
	if v, ok := coordHostViews[host.Self]; ok {
		return v
	}
	s := Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem)
	info := *s.StorageDeviceInfo
	s.StorageDeviceInfo = &info
	v := &coordHostView{luns: map[string]*coordLun{}, baseInfo: info.ScsiLun}
	if host.Config != nil && host.Config.StorageDevice != nil {
		v.baseConfig = host.Config.StorageDevice.ScsiLun
	}
	coordHostViews[host.Self] = v
	return v
}

func coordScsiDisk(lun *coordLun) *types.HostScsiDisk {
	uuid := coordLunUuid(lun.naa)
	state := "ok"
	if lun.detached {
		state = "off"
	}
	return &types.HostScsiDisk{
		ScsiLun: types.ScsiLun{
			HostDevice:             types.HostDevice{DeviceName: coordDevicePath(lun.naa), DeviceType: "disk"},
			Key:                    "key-vim.host.ScsiDisk-" + uuid,
			Uuid:                   uuid,
			CanonicalName:          "naa." + lun.naa,
			DisplayName:            "TrueNAS iSCSI Disk (naa." + lun.naa + ")",
			LunType:                "disk",
			Vendor:                 "TrueNAS",
			Model:                  "iSCSI Disk",
			Revision:               "0123",
			ScsiLevel:              6,
			QueueDepth:             128,
			OperationalState:       []string{state},
			VStorageSupport:        "vStorageSupported",
			ProtocolEndpoint:       types.NewBool(false),
			PerenniallyReserved:    types.NewBool(false),
			ClusteredVmdkSupported: types.NewBool(false),
		},
		Capacity:              types.HostDiskDimensionsLba{BlockSize: coordSectorSize, Block: coordCapacity(lun.device) / coordSectorSize},
		DevicePath:            coordDevicePath(lun.naa),
		Ssd:                   types.NewBool(false),
		LocalDisk:             types.NewBool(false),
		EmulatedDIXDIFEnabled: types.NewBool(false),
		ScsiDiskType:          "native512",
	}
}

// coordPublish lists the host's view in both of its scsiLun lists (coordVmfsMu held).
func coordPublish(ctx *Context, host *HostSystem, v *coordHostView) {
	naas := make([]string, 0, len(v.luns))
	for naa := range v.luns {
		naas = append(naas, naa)
	}
	sort.Strings(naas)
	var disks []types.BaseScsiLun
	for _, naa := range naas {
		disks = append(disks, coordScsiDisk(v.luns[naa]))
	}
	s := Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem)
	// Fresh slices: the base ones may still share the template's array.
	s.StorageDeviceInfo.ScsiLun = append(append([]types.BaseScsiLun{}, v.baseInfo...), disks...)
	ctx.WithLock(host, func() {
		if host.Config != nil && host.Config.StorageDevice != nil {
			host.Config.StorageDevice.ScsiLun = append(append([]types.BaseScsiLun{}, v.baseConfig...), disks...)
		}
	})
}

// coordRescanLuns is a rescan of s's host: it sees the target's LUNs as they are now.
func coordRescanLuns(ctx *Context, s *HostStorageSystem) {
	if CoordIscsiDir == "" {
		return
	}
	host := coordHostOf(s.Host.Self)
	if host == nil {
		return
	}
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	v := coordView(host)
	next := map[string]*coordLun{}
	for naa, device := range coordReadTarget() {
		lun, ok := v.luns[naa]
		if !ok {
			lun = &coordLun{naa: naa}
		}
		lun.device = device
		next[naa] = lun
	}
	v.luns = next
	coordPublish(ctx, host, v)
}

// CoordIscsiStart logs every host in to the rig's iSCSI target in dir and scans it.
func CoordIscsiStart(dir string) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is no directory", dir)
	}
	CoordIscsiDir = dir
	ctx := &Context{Map: Map}
	for _, e := range Map.All("HostSystem") {
		host := e.(*HostSystem)
		coordRescanLuns(ctx, Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem))
	}
	return nil
}

func coordVmfsOf(ds *Datastore) *types.HostVmfsVolume {
	if info, ok := ds.Info.(*types.VmfsDatastoreInfo); ok {
		return info.Vmfs
	}
	return nil
}

func coordMountedOn(ds *Datastore, host *HostSystem) bool {
	return FindReference(host.Datastore, ds.Self) != nil
}

// coordVmfsDatastores are the VMFS datastores mounted on some host. The inventory is the
// state, so datastores removed by RemoveDatastore or Destroy_Task drop out by themselves.
func coordVmfsDatastores() []*Datastore {
	var out []*Datastore
	for _, e := range Map.All("Datastore") {
		ds, ok := e.(*Datastore)
		if !ok || coordVmfsOf(ds) == nil {
			continue
		}
		for _, mount := range ds.Host {
			if host := coordHostOf(mount.Key); host != nil && coordMountedOn(ds, host) {
				out = append(out, ds)
				break
			}
		}
	}
	return out
}

// coordMountedFrom is the datastore of the volume on LUN naa mounted on host (any host
// when host is nil), or nil.
func coordMountedFrom(naa string, host *HostSystem) *Datastore {
	for _, ds := range coordVmfsDatastores() {
		vmfs := coordVmfsOf(ds)
		if len(vmfs.Extent) == 0 || vmfs.Extent[0].DiskName != "naa."+naa {
			continue
		}
		if host == nil || coordMountedOn(ds, host) {
			return ds
		}
	}
	return nil
}

func coordMountedUuid(uuid string) *Datastore {
	for _, ds := range coordVmfsDatastores() {
		if coordVmfsOf(ds).Uuid == uuid {
			return ds
		}
	}
	return nil
}

// coordNameTaken is the datastore of that name in the host's datacenter, or nil.
func coordNameTaken(host *HostSystem, name string) *types.ManagedObjectReference {
	dc := Map.getEntityDatacenter(host)
	if dc == nil {
		return nil
	}
	if e := Map.FindByName(name, dc.Datastore); e != nil {
		ref := e.Reference()
		return &ref
	}
	return nil
}

func coordMountInfo(vmfs *types.HostVmfsVolume) types.HostFileSystemMountInfo {
	return types.HostFileSystemMountInfo{
		MountInfo: types.HostMountInfo{
			Path:       "/vmfs/volumes/" + vmfs.Uuid,
			AccessMode: string(types.HostMountModeReadWrite),
			Mounted:    types.NewBool(true),
			Accessible: types.NewBool(true),
		},
		Volume:          vmfs,
		VStorageSupport: "vStorageSupported",
	}
}

// coordAddMount records a mount of ds on host in ds.host and the host's mount table.
func coordAddMount(ctx *Context, ds *Datastore, host *HostSystem) {
	mount := coordMountInfo(coordVmfsOf(ds))
	ds.Host = append(ds.Host, types.DatastoreHostMount{Key: host.Self, MountInfo: mount.MountInfo})
	s := Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem)
	s.FileSystemVolumeInfo.MountInfo = append(s.FileSystemVolumeInfo.MountInfo, mount)
	ctx.WithLock(host, func() {
		if host.Config == nil {
			return
		}
		if host.Config.FileSystemVolume == nil {
			host.Config.FileSystemVolume = &types.HostFileSystemVolumeInfo{}
		}
		host.Config.FileSystemVolume.MountInfo = append(host.Config.FileSystemVolume.MountInfo, mount)
	})
}

func coordDropMountInfo(mounts []types.HostFileSystemMountInfo, uuid string) []types.HostFileSystemMountInfo {
	kept := mounts[:0:0]
	for _, m := range mounts {
		if vmfs, ok := m.Volume.(*types.HostVmfsVolume); !ok || vmfs.Uuid != uuid {
			kept = append(kept, m)
		}
	}
	return kept
}

// coordMountVmfs mounts the volume on device as datastore name on host (whose datastore
// system is dss) and on the others hosts (attached to its LUN) through the simulator's own
// datastore creation.
func coordMountVmfs(ctx *Context, dss *HostDatastoreSystem, name string, h coordVmfsHeader, device string,
	others []*HostSystem) (*Datastore, *coordErr) {
	capacity := coordCapacity(device)
	vmfs := &types.HostVmfsVolume{
		HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: h.Label, Capacity: capacity},
		BlockSizeMb:          1,
		BlockSize:            1024,
		UnmapGranularity:     1024,
		UnmapPriority:        "low",
		MaxBlocks:            63963136,
		MajorVersion:         6,
		Version:              "6.82",
		Uuid:                 h.Uuid,
		Extent:               []types.HostScsiDiskPartition{{DiskName: "naa." + h.Naa, Partition: 1}},
		Ssd:                  types.NewBool(false),
		Local:                types.NewBool(false),
		ScsiDiskType:         "native512",
	}
	ds := &Datastore{}
	ds.Name = name
	ds.Self.Value = h.Uuid // add() makes it unique per datacenter
	ds.Info = &types.VmfsDatastoreInfo{
		DatastoreInfo:          types.DatastoreInfo{Name: name, Url: device},
		MaxPhysicalRDMFileSize: 64 << 40,
		MaxVirtualRDMFileSize:  62 << 40,
		Vmfs:                   vmfs,
	}
	ds.Summary.Type = string(types.HostFileSystemVolumeFileSystemTypeVMFS)
	ds.Summary.MaintenanceMode = string(types.DatastoreSummaryMaintenanceModeStateNormal)
	ds.Summary.Accessible = true
	ds.Summary.MultipleHostAccess = types.NewBool(true)
	if f := dss.add(ctx, ds); f != nil {
		return nil, &coordErr{fault: f.Detail.Fault.(types.BaseMethodFault), msg: f.String}
	}
	// info.url stays the local directory: 0.24.2 reads a datastore's files from there.
	ds.Summary.Url = "ds:///vmfs/volumes/" + h.Uuid + "/"
	host := coordHostOf(dss.Host.Self)
	coordAddMount(ctx, ds, host)
	for _, other := range others {
		odss := Map.Get(*other.ConfigManager.DatastoreSystem).(*HostDatastoreSystem)
		if other == host || Map.FindByName(name, odss.Datastore) != nil {
			continue
		}
		odss.Datastore = append(odss.Datastore, ds.Self)
		odss.Host.Datastore = odss.Datastore // the same list, as add() keeps them
		parent := hostParent(&other.HostSystem)
		Map.AddReference(parent, &parent.Datastore, ds.Self)
		coordAddMount(ctx, ds, other)
	}
	_ = ds.RefreshDatastore(&types.RefreshDatastore{This: ds.Self})
	return ds, nil
}

// coordUnmount unmounts ds from host; the datastore is gone when no host mounts it.
func coordUnmount(ctx *Context, ds *Datastore, host *HostSystem) {
	dss := Map.Get(*host.ConfigManager.DatastoreSystem).(*HostDatastoreSystem)
	coordDropDatastore(dss, ds.Self)
	uuid := coordVmfsOf(ds).Uuid
	s := Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem)
	s.FileSystemVolumeInfo.MountInfo = coordDropMountInfo(s.FileSystemVolumeInfo.MountInfo, uuid)
	ctx.WithLock(host, func() {
		if host.Config != nil && host.Config.FileSystemVolume != nil {
			host.Config.FileSystemVolume.MountInfo = coordDropMountInfo(host.Config.FileSystemVolume.MountInfo, uuid)
		}
	})
	mounts := ds.Host[:0:0]
	for _, m := range ds.Host {
		if m.Key != host.Self {
			mounts = append(mounts, m)
		}
	}
	ds.Host = mounts
	// A cluster keeps the datastore while another of its hosts mounts it.
	parent := hostParent(&host.HostSystem)
	shared := false
	for _, ref := range parent.Host {
		if other := coordHostOf(ref); other != nil && other != host && coordMountedOn(ds, other) {
			shared = true
		}
	}
	if !shared {
		Map.RemoveReference(parent, &parent.Datastore, ds.Self)
	}
	if len(mounts) == 0 {
		if f, ok := asFolderMO(Map.Get(*ds.Parent)); ok {
			folderRemoveChild(ctx, f, ds.Self) // also drops it from the datacenter's list
		}
	}
}

// coordFindLun is the LUN of host's view that devicePath ("/vmfs/devices/disks/naa.X",
// with ":1" when partition) names, or nil.
func coordFindLun(v *coordHostView, devicePath string, partition bool) *coordLun {
	name := strings.TrimPrefix(devicePath, coordDisksDir)
	if name == devicePath {
		return nil
	}
	if partition {
		if !strings.HasSuffix(name, ":1") {
			return nil
		}
		name = strings.TrimSuffix(name, ":1")
	}
	return v.luns[strings.TrimPrefix(name, "naa.")]
}

// coordIsCopy is the header of an unresolved copy on lun, or nil: a header written for
// another device (ESXi sees the signature not matching the device) not mounted here.
func coordIsCopy(lun *coordLun, host *HostSystem) *coordVmfsHeader {
	if lun.detached {
		return nil
	}
	h := coordReadHeader(lun.device)
	if h == nil || h.Naa == lun.naa || coordMountedFrom(lun.naa, host) != nil {
		return nil
	}
	return h
}

// coordUnresolved lists host's unresolved VMFS volumes (coordVmfsMu held).
func coordUnresolved(host *HostSystem) []types.HostUnresolvedVmfsVolume {
	v := coordView(host)
	naas := make([]string, 0, len(v.luns))
	for naa := range v.luns {
		naas = append(naas, naa)
	}
	sort.Strings(naas)
	type found struct {
		lun    *coordLun
		header *coordVmfsHeader
	}
	var copies []found
	perUuid := map[string]int{}
	for _, naa := range naas {
		if h := coordIsCopy(v.luns[naa], host); h != nil {
			copies = append(copies, found{v.luns[naa], h})
			perUuid[h.Uuid]++
		}
	}
	var out []types.HostUnresolvedVmfsVolume
	for _, c := range copies {
		blocks := coordVmfsBlocks(c.lun.device)
		out = append(out, types.HostUnresolvedVmfsVolume{
			VmfsLabel:   c.header.Label,
			VmfsUuid:    c.header.Uuid,
			TotalBlocks: blocks,
			ResolveStatus: types.HostUnresolvedVmfsVolumeResolveStatus{
				Resolvable:        true,
				IncompleteExtents: types.NewBool(false),
				MultipleCopies:    types.NewBool(perUuid[c.header.Uuid] > 1),
			},
			Extent: []types.HostUnresolvedVmfsExtent{{
				Device:       types.HostScsiDiskPartition{DiskName: "naa." + c.lun.naa, Partition: 1},
				DevicePath:   coordDevicePath(c.lun.naa) + ":1",
				VmfsUuid:     c.header.Uuid,
				IsHeadExtent: true,
				Ordinal:      0,
				StartBlock:   0,
				EndBlock:     blocks - 1,
				Reason:       "diskIdMismatch",
			}},
		})
	}
	return out
}

// coordUnresolvedOn is what both queries answer: the VMFS copies a host sees and has not mounted.
func coordUnresolvedOn(ref types.ManagedObjectReference) []types.HostUnresolvedVmfsVolume {
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	if host := coordHostOf(ref); host != nil {
		return coordUnresolved(host)
	}
	return nil
}

// QueryUnresolvedVmfsVolume lists the VMFS copies this host sees and has not mounted.
func (s *HostStorageSystem) QueryUnresolvedVmfsVolume(ctx *Context, req *types.QueryUnresolvedVmfsVolume) soap.HasFault {
	return &methods.QueryUnresolvedVmfsVolumeBody{
		Res: &types.QueryUnresolvedVmfsVolumeResponse{Returnval: coordUnresolvedOn(s.Host.Self)}}
}

// QueryUnresolvedVmfsVolumes is the same list through the datastore system.
func (dss *HostDatastoreSystem) QueryUnresolvedVmfsVolumes(ctx *Context, req *types.QueryUnresolvedVmfsVolumes) soap.HasFault {
	return &methods.QueryUnresolvedVmfsVolumesBody{
		Res: &types.QueryUnresolvedVmfsVolumesResponse{Returnval: coordUnresolvedOn(dss.Host.Self)}}
}

// QueryVmfsDatastoreCreateOptions gives the spec for formatting a whole LUN as VMFS 6.
func (dss *HostDatastoreSystem) QueryVmfsDatastoreCreateOptions(ctx *Context, req *types.QueryVmfsDatastoreCreateOptions) soap.HasFault {
	body := &methods.QueryVmfsDatastoreCreateOptionsBody{}
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	host := coordHostOf(dss.Host.Self)
	lun := coordFindLun(coordView(host), req.DevicePath, false)
	if lun == nil || lun.detached {
		body.Fault_ = Fault(req.DevicePath+" is no attached disk of "+host.Name, &types.NotFound{})
		return body
	}
	sectors := coordCapacity(lun.device) / coordSectorSize
	blockRange := types.HostDiskPartitionBlockRange{
		Partition: 1,
		Type:      "VMFS",
		Start:     types.HostDiskDimensionsLba{BlockSize: coordSectorSize, Block: coordFirstSector},
		End:       types.HostDiskDimensionsLba{BlockSize: coordSectorSize, Block: sectors - 1},
	}
	major := req.VmfsMajorVersion
	if major == 0 {
		major = 6
	}
	body.Res = &types.QueryVmfsDatastoreCreateOptionsResponse{Returnval: []types.VmfsDatastoreOption{{
		Info: &types.VmfsDatastoreAllExtentOption{VmfsDatastoreSingleExtentOption: types.VmfsDatastoreSingleExtentOption{
			VmfsDatastoreBaseOption: types.VmfsDatastoreBaseOption{
				Layout: types.HostDiskPartitionLayout{
					Total:     &types.HostDiskDimensionsLba{BlockSize: coordSectorSize, Block: sectors},
					Partition: []types.HostDiskPartitionBlockRange{blockRange},
				},
				PartitionFormatChange: types.NewBool(false),
			},
			VmfsExtent: blockRange,
		}},
		Spec: &types.VmfsDatastoreCreateSpec{
			VmfsDatastoreSpec: types.VmfsDatastoreSpec{DiskUuid: coordLunUuid(lun.naa)},
			Partition: types.HostDiskPartitionSpec{
				PartitionFormat: "gpt",
				TotalSectors:    sectors,
				Partition: []types.HostDiskPartitionAttributes{{
					Partition: 1, StartSector: coordFirstSector, EndSector: sectors - 1,
					Type: coordVmfsPartitionType, Logical: false,
				}},
			},
			Vmfs: types.HostVmfsSpec{
				Extent:       types.HostScsiDiskPartition{DiskName: "naa." + lun.naa, Partition: 1},
				BlockSizeMb:  1,
				MajorVersion: major,
			},
		},
	}}}
	return body
}

// CreateVmfsDatastore formats a LUN and mounts the new volume on the hosts that see it.
func (dss *HostDatastoreSystem) CreateVmfsDatastore(ctx *Context, req *types.CreateVmfsDatastore) soap.HasFault {
	body := &methods.CreateVmfsDatastoreBody{}
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	ds, err := dss.coordCreateVmfs(ctx, req.Spec)
	if err != nil {
		body.Fault_ = Fault(err.msg, err.fault)
		return body
	}
	body.Res = &types.CreateVmfsDatastoreResponse{Returnval: ds.Self}
	return body
}

func (dss *HostDatastoreSystem) coordCreateVmfs(ctx *Context, spec types.VmfsDatastoreCreateSpec) (*Datastore, *coordErr) {
	host := coordHostOf(dss.Host.Self)
	v := coordView(host)
	diskName := spec.Vmfs.Extent.DiskName
	var lun *coordLun
	if strings.HasPrefix(diskName, "naa.") {
		lun = v.luns[strings.TrimPrefix(diskName, "naa.")]
	} else if diskName == "" {
		for _, l := range v.luns {
			if coordLunUuid(l.naa) == spec.DiskUuid {
				lun = l
				diskName = "naa." + l.naa
			}
		}
		if lun == nil {
			diskName = "disk uuid " + spec.DiskUuid
		}
	}
	name := spec.Vmfs.VolumeName
	switch {
	case lun == nil || lun.detached:
		return nil, coordFail(&types.NotFound{}, "%s is no attached disk of %s", diskName, host.Name)
	case name == "":
		return nil, coordFail(&types.InvalidArgument{InvalidProperty: "spec.vmfs.volumeName"}, "no volume name")
	}
	if ds := coordMountedFrom(lun.naa, nil); ds != nil {
		return nil, coordFail(&types.HostConfigFault{},
			"naa.%s holds the mounted VMFS volume %s (datastore %s); unmount it before formatting the disk",
			lun.naa, coordVmfsOf(ds).Uuid, ds.Name)
	}
	if ref := coordNameTaken(host, name); ref != nil {
		return nil, coordFail(&types.DuplicateName{Name: name, Object: *ref}, "a datastore named %s exists", name)
	}
	h := coordVmfsHeader{Uuid: coordNewVmfsUuid(), Label: name, Naa: lun.naa}
	if err := coordWriteHeader(lun.device, h); err != nil {
		return nil, coordFail(&types.HostConfigFault{}, "formatting naa.%s: %s", lun.naa, err)
	}
	// The other hosts attached to the LUN mount it too (vCenter rescans them).
	var others []*HostSystem
	for ref, ov := range coordHostViews {
		if other := coordHostOf(ref); other != nil && other != host {
			if l, ok := ov.luns[lun.naa]; ok && !l.detached {
				others = append(others, other)
			}
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i].Self.Value < others[j].Self.Value })
	return coordMountVmfs(ctx, dss, name, h, lun.device, others)
}

// ResignatureUnresolvedVmfsVolumeTask gives a VMFS copy a signature of its own and mounts it.
func (dss *HostDatastoreSystem) ResignatureUnresolvedVmfsVolumeTask(ctx *Context, req *types.ResignatureUnresolvedVmfsVolume_Task) soap.HasFault {
	// The task's entity is the host (pyVmomi needs a ManagedEntity there).
	task := CreateTask(dss.Host, "resignatureUnresolvedVmfsVolume", nil)
	ref := coordRunTask(task, func() (types.AnyType, *coordErr) {
		coordVmfsMu.Lock()
		defer coordVmfsMu.Unlock()
		return dss.coordResignature(ctx, req.ResolutionSpec.ExtentDevicePath)
	})
	return &methods.ResignatureUnresolvedVmfsVolume_TaskBody{
		Res: &types.ResignatureUnresolvedVmfsVolume_TaskResponse{Returnval: ref},
	}
}

func (dss *HostDatastoreSystem) coordResignature(ctx *Context, paths []string) (types.AnyType, *coordErr) {
	host := coordHostOf(dss.Host.Self)
	invalid := &types.InvalidArgument{InvalidProperty: "resolutionSpec.extentDevicePath"}
	if len(paths) != 1 {
		return nil, coordFail(invalid, "%d extent device paths given; the volumes here have one extent", len(paths))
	}
	lun := coordFindLun(coordView(host), paths[0], true)
	if lun == nil || lun.detached {
		return nil, coordFail(invalid, "%s is no partition of an attached disk of %s", paths[0], host.Name)
	}
	h := coordIsCopy(lun, host)
	if h == nil {
		return nil, coordFail(invalid, "%s holds no unresolved VMFS volume", paths[0])
	}
	label := "snap-" + coordRandomHex(4) + "-" + h.Label
	// ESXi relabels a resignatured volume; the datastore's name is the label.
	resigned := coordVmfsHeader{Uuid: coordNewVmfsUuid(), Label: label, Naa: lun.naa}
	if err := coordWriteHeader(lun.device, resigned); err != nil {
		return nil, coordFail(&types.HostConfigFault{}, "resignaturing naa.%s: %s", lun.naa, err)
	}
	ds, err := coordMountVmfs(ctx, dss, label, resigned, lun.device, nil)
	if err != nil {
		return nil, err
	}
	return types.HostResignatureRescanResult{Result: ds.Self}, nil
}

// UnmountVmfsVolume unmounts a VMFS volume from this host.
func (s *HostStorageSystem) UnmountVmfsVolume(ctx *Context, req *types.UnmountVmfsVolume) soap.HasFault {
	body := &methods.UnmountVmfsVolumeBody{}
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	host := coordHostOf(s.Host.Self)
	ds := coordMountedUuid(req.VmfsUuid)
	switch {
	case ds == nil:
		body.Fault_ = Fault("no mounted VMFS volume has uuid "+req.VmfsUuid, &types.NotFound{})
		return body
	case !coordMountedOn(ds, host):
		body.Fault_ = Fault("VMFS volume "+req.VmfsUuid+" is not mounted on "+host.Name, &types.InvalidState{})
		return body
	}
	for _, ref := range ds.Vm {
		if vm, ok := Map.Get(ref).(*VirtualMachine); ok && vm.Runtime.Host != nil && *vm.Runtime.Host == host.Self {
			body.Fault_ = Fault(fmt.Sprintf("VM %s on %s has files on datastore %s", vm.Name, host.Name, ds.Name),
				&types.ResourceInUse{Type: ds.Self.Type, Name: ds.Name})
			return body
		}
	}
	coordUnmount(ctx, ds, host)
	body.Res = &types.UnmountVmfsVolumeResponse{}
	return body
}

func (s *HostStorageSystem) coordLunByUuid(uuid string) (*HostSystem, *coordHostView, *coordLun) {
	host := coordHostOf(s.Host.Self)
	v := coordView(host)
	for _, lun := range v.luns {
		if coordLunUuid(lun.naa) == uuid {
			return host, v, lun
		}
	}
	return host, v, nil
}

// coordSetDetached detaches (or attaches again) an iSCSI LUN of this host; detach is
// refused while a volume on it is mounted here (the model's own disks are not LUNs).
func (s *HostStorageSystem) coordSetDetached(ctx *Context, lunUuid string, detach bool) *soap.Fault {
	coordVmfsMu.Lock()
	defer coordVmfsMu.Unlock()
	host, v, lun := s.coordLunByUuid(lunUuid)
	switch {
	case lun == nil:
		return Fault("no iSCSI LUN of "+host.Name+" has uuid "+lunUuid, &types.NotFound{})
	case lun.detached && detach:
		return Fault("naa."+lun.naa+" is detached already", &types.InvalidState{})
	case !lun.detached && !detach:
		return Fault("naa."+lun.naa+" is attached already", &types.InvalidState{})
	}
	if ds := coordMountedFrom(lun.naa, host); detach && ds != nil {
		return Fault(fmt.Sprintf("naa.%s holds VMFS volume %s, mounted as datastore %s", lun.naa,
			coordVmfsOf(ds).Uuid, ds.Name), &types.ResourceInUse{Type: "ScsiLun", Name: "naa." + lun.naa})
	}
	lun.detached = detach
	coordPublish(ctx, host, v)
	return nil
}

// DetachScsiLun detaches an iSCSI LUN from this host.
func (s *HostStorageSystem) DetachScsiLun(ctx *Context, req *types.DetachScsiLun) soap.HasFault {
	if fault := s.coordSetDetached(ctx, req.LunUuid, true); fault != nil {
		return &methods.DetachScsiLunBody{Fault_: fault}
	}
	return &methods.DetachScsiLunBody{Res: &types.DetachScsiLunResponse{}}
}

// AttachScsiLun attaches a detached iSCSI LUN again.
func (s *HostStorageSystem) AttachScsiLun(ctx *Context, req *types.AttachScsiLun) soap.HasFault {
	if fault := s.coordSetDetached(ctx, req.LunUuid, false); fault != nil {
		return &methods.AttachScsiLunBody{Fault_: fault}
	}
	return &methods.AttachScsiLunBody{Res: &types.AttachScsiLunResponse{}}
}

// coordRenameDatastore renames ds (and a VMFS volume's label, as ESXi relabels it).
func coordRenameDatastore(ds *Datastore, name string) *coordErr {
	if name == "" {
		return coordFail(&types.InvalidArgument{InvalidProperty: "newName"}, "empty datastore name")
	}
	if name == ds.Name {
		return nil
	}
	if dc := Map.getEntityDatacenter(ds); dc != nil {
		if e := Map.FindByName(name, dc.Datastore); e != nil {
			return coordFail(&types.DuplicateName{Name: name, Object: e.Reference()},
				"a datastore named %s exists", name)
		}
	}
	info := ds.Info.GetDatastoreInfo()
	if vmfs := coordVmfsOf(ds); vmfs != nil {
		if h := coordReadHeader(info.Url); h != nil && h.Uuid == vmfs.Uuid {
			h.Label = name
			if err := coordWriteHeader(info.Url, *h); err != nil {
				return coordFail(&types.HostConfigFault{}, "relabelling %s: %s", vmfs.Uuid, err)
			}
		}
		vmfs.Name = name
	}
	info.Name = name
	Map.Update(ds, []types.PropertyChange{{Name: "name", Val: name}, {Name: "summary.name", Val: name}})
	return nil
}

// RenameTask renames a datastore (ManagedEntity.Rename_Task).
func (ds *Datastore) RenameTask(ctx *Context, req *types.Rename_Task) soap.HasFault {
	task := CreateTask(ds, "rename", nil)
	ref := coordRunTask(task, func() (types.AnyType, *coordErr) {
		if err := coordRenameDatastore(ds, req.NewName); err != nil {
			return nil, err
		}
		return nil, nil
	})
	return &methods.Rename_TaskBody{Res: &types.Rename_TaskResponse{Returnval: ref}}
}

// RenameDatastore is the older, synchronous way to rename a datastore.
func (ds *Datastore) RenameDatastore(ctx *Context, req *types.RenameDatastore) soap.HasFault {
	body := &methods.RenameDatastoreBody{}
	if err := coordRenameDatastore(ds, req.NewName); err != nil {
		body.Fault_ = Fault(err.msg, err.fault)
		return body
	}
	body.Res = &types.RenameDatastoreResponse{}
	return body
}
