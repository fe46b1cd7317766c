// Test-rig additions to govmomi 0.24.2's simulator package: what a restore from a copied
// VM directory needs (added through `go build -overlay` like coord_hooks.go).
//
// Each is a TEST DOUBLE of one VMware behaviour that 0.24.2 does not have, no more:
//
//   - The .vmsd / .vmx double. VMware keeps a VM's snapshot tree in its `.vmsd` file and
//     its devices in the `.vmx`, next to each other on the datastore, so a VM registered
//     from a copied directory (a ZFS clone) comes back with both. The simulator keeps them
//     in memory only, and RegisterVM_Task makes a VM with default devices and no
//     snapshots. Here every snapshot create, remove and revert writes a sidecar,
//     `<vm>.vcsim-vmsd.xml`, next to the `.vmx` (the snapshot tree, the current snapshot,
//     the devices, in the simulator's own XML encoding), and RegisterVM_Task reads it back:
//     the registered VM gets those devices (disk files on the VM's own datastore renamed
//     to the datastore it is registered from) and a snapshot tree with new managed objects.
//   - The "moved or copied?" question. A VM registered from a sidecar written for another
//     .vmx path asks it on its first power-on (runtime.question, the power-on task stays
//     running until AnswerVM, which 0.24.2 lacks); "copied" gives it a new UUID and new
//     MAC addresses, "moved" keeps them, "cancel" fails the power-on.
//   - RegisterVM_Task under a name other than the files': a missing .nvram is made afresh
//     (ESXi does; 0.24.2 refuses the registration with NotFound).
//   - CreateNasDatastore with a datastore name as localPath (what ESXi takes): 0.24.2
//     uses localPath as the local directory; here a name that is not an absolute path
//     mounts remotePath, the NFS export, which in the rig is a local directory (the NAS and
//     the simulator share the machine).
//   - HostDatastoreSystem.RemoveDatastore, which 0.24.2 lacks: unmounts a datastore from
//     the host (refused while a registered VM uses it); gone when no host mounts it.

package simulator

import (
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	vimxml "github.com/vmware/govmomi/vim25/xml"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const coordVmsdSuffix = ".vcsim-vmsd.xml"

// Answer keys, as ESXi names the choices of its msg.uuid.altered question.
const (
	coordAnswerCancel = "0"
	coordAnswerMoved  = "1"
	coordAnswerCopied = "2"
)

type coordVmsdSnapshot struct {
	Id          int32     `xml:"id"`
	Parent      int32     `xml:"parent"`
	Name        string    `xml:"name"`
	Description string    `xml:"description"`
	CreateTime  time.Time `xml:"createTime"`
	State       string    `xml:"state"`
	Quiesced    bool      `xml:"quiesced"`
}

type coordVmsd struct {
	XMLName   vimxml.Name               `xml:"vmsd"`
	VmxPath   string                    `xml:"vmxPath"` // the .vmx path it was written for
	Current   int32                     `xml:"current"` // 0: no current snapshot
	Snapshots []coordVmsdSnapshot       `xml:"snapshot"`
	Devices   []types.BaseVirtualDevice `xml:"device,typeattr"`
}

// VMs registered from another VM's sidecar that have not answered the question yet.
var coordCopied sync.Map // vm moref value -> true

// coordSidecar is the sidecar's local file path for a .vmx datastore path, or "".
func coordSidecar(vm *VirtualMachine, vmxPath string) string {
	p, fault := parseDatastorePath(vmxPath)
	if fault != nil || vm.Runtime.Host == nil {
		return ""
	}
	host := Map.Get(*vm.Runtime.Host).(*HostSystem)
	ds, ok := Map.FindByName(p.Datastore, host.Datastore).(*Datastore)
	if !ok {
		return ""
	}
	return path.Join(ds.Info.GetDatastoreInfo().Url, strings.TrimSuffix(p.Path, ".vmx")+coordVmsdSuffix)
}

func coordFlatten(trees []types.VirtualMachineSnapshotTree, parent int32, out []coordVmsdSnapshot) []coordVmsdSnapshot {
	for _, t := range trees {
		out = append(out, coordVmsdSnapshot{Id: t.Id, Parent: parent, Name: t.Name, Description: t.Description,
			CreateTime: t.CreateTime, State: string(t.State), Quiesced: t.Quiesced})
		out = coordFlatten(t.ChildSnapshotList, t.Id, out)
	}
	return out
}

// coordWriteVmsd records vm's snapshot tree and devices next to its .vmx (called after
// every change of the tree, with the VM locked).
func coordWriteVmsd(vm *VirtualMachine) {
	file := coordSidecar(vm, vm.Config.Files.VmPathName)
	if file == "" {
		return
	}
	doc := coordVmsd{VmxPath: vm.Config.Files.VmPathName, Devices: vm.Config.Hardware.Device}
	if vm.Snapshot != nil {
		doc.Snapshots = coordFlatten(vm.Snapshot.RootSnapshotList, 0, nil)
		if cur := vm.Snapshot.CurrentSnapshot; cur != nil {
			if t := findSnapshotInTree(vm.Snapshot.RootSnapshotList, *cur); t != nil {
				doc.Current = t.Id
			}
		}
	}
	body, err := vimxml.Marshal(doc)
	if err == nil {
		err = os.WriteFile(file, body, 0600)
	}
	if err != nil {
		vm.logPrintf("vmsd sidecar %s: %s", file, err)
	}
}

// coordRegistered gives a VM just registered from vmxPath what its sidecar recorded.
func coordRegistered(ref types.AnyType, vmxPath string) (types.AnyType, types.BaseMethodFault) {
	moref, ok := ref.(types.ManagedObjectReference)
	if !ok {
		return ref, nil
	}
	vm := Map.Get(moref).(*VirtualMachine)
	file := coordSidecar(vm, vmxPath)
	f, err := os.Open(file)
	if err != nil {
		return ref, nil // registered from a directory no snapshot or sidecar was ever made in
	}
	defer f.Close()
	var doc coordVmsd
	dec := vimxml.NewDecoder(f)
	dec.TypeFunc = types.TypeFunc()
	if err = dec.Decode(&doc); err != nil {
		return nil, &types.InvalidArgument{InvalidProperty: "vmsd: " + err.Error()}
	}
	if fault := coordRestoreDevices(vm, &doc, vmxPath); fault != nil {
		return nil, fault
	}
	coordRestoreTree(vm, &doc)
	if doc.VmxPath != vmxPath {
		coordCopied.Store(vm.Self.Value, true)
	}
	return ref, nil
}

// coordRestoreDevices adds the recorded devices the VM does not have yet; a disk file on
// the datastore of the recorded .vmx is looked for on the datastore registered from.
func coordRestoreDevices(vm *VirtualMachine, doc *coordVmsd, vmxPath string) types.BaseMethodFault {
	var was, now object.DatastorePath
	was.FromString(doc.VmxPath)
	now.FromString(vmxPath)
	present := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var changes []types.BaseVirtualDeviceConfigSpec
	for _, device := range doc.Devices {
		d := device.GetVirtualDevice()
		if present.FindByKey(d.Key) != nil {
			continue
		}
		if disk, ok := device.(*types.VirtualDisk); ok {
			if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				info := b.GetVirtualDeviceFileBackingInfo()
				var p object.DatastorePath
				if p.FromString(info.FileName) && p.Datastore == was.Datastore {
					p.Datastore = now.Datastore
					info.FileName = p.String()
					info.Datastore = nil
				}
			}
		}
		changes = append(changes, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: device})
	}
	if len(changes) == 0 {
		return nil
	}
	return vm.configureDevices(&types.VirtualMachineConfigSpec{DeviceChange: changes})
}

// coordRestoreTree recreates the snapshot tree with new snapshot objects.
func coordRestoreTree(vm *VirtualMachine, doc *coordVmsd) {
	if len(doc.Snapshots) == 0 {
		return
	}
	items := map[int32]*types.VirtualMachineSnapshotTree{}
	objects := map[int32]*VirtualMachineSnapshot{}
	var current *types.ManagedObjectReference
	for _, s := range doc.Snapshots {
		snapshot := &VirtualMachineSnapshot{}
		snapshot.Vm = vm.Self
		snapshot.Config = *vm.Config
		Map.Put(snapshot)
		objects[s.Id] = snapshot
		items[s.Id] = &types.VirtualMachineSnapshotTree{
			Snapshot: snapshot.Self, Vm: vm.Self, Name: s.Name, Description: s.Description, Id: s.Id,
			CreateTime: s.CreateTime, State: types.VirtualMachinePowerState(s.State), Quiesced: s.Quiesced,
			ReplaySupported: types.NewBool(false),
		}
		if s.Id == doc.Current {
			ref := snapshot.Self
			current = &ref
		}
		if s.Id > vm.sid {
			vm.sid = s.Id
		}
	}
	// Children first (the list is in tree order), so each parent copies complete subtrees.
	for i := len(doc.Snapshots) - 1; i >= 0; i-- {
		s := doc.Snapshots[i]
		if parent, ok := items[s.Parent]; ok {
			parent.ChildSnapshotList = append([]types.VirtualMachineSnapshotTree{*items[s.Id]},
				parent.ChildSnapshotList...)
			objects[s.Parent].ChildSnapshot = append([]types.ManagedObjectReference{objects[s.Id].Self},
				objects[s.Parent].ChildSnapshot...)
		}
	}
	var roots []types.VirtualMachineSnapshotTree
	for _, s := range doc.Snapshots {
		if _, ok := items[s.Parent]; !ok {
			roots = append(roots, *items[s.Id])
		}
	}
	vm.Snapshot = &types.VirtualMachineSnapshotInfo{}
	Map.Update(vm, []types.PropertyChange{
		{Name: "snapshot.rootSnapshotList", Val: roots},
		{Name: "snapshot.currentSnapshot", Val: current},
	})
}

// coordRegisterFile opens a registered VM's file; a missing .nvram (the VM registered
// under another name than its files') is made afresh, as ESXi does.
func coordRegisterFile(vm *VirtualMachine, spec, name string, register bool) (*os.File, types.BaseMethodFault) {
	f, fault := vm.createFile(spec, name, register)
	if _, missing := fault.(*types.NotFound); missing && register && strings.HasSuffix(name, ".nvram") {
		return vm.createFile(spec, name, false)
	}
	return f, fault
}

// coordQuestionPowerOn holds the first power-on of a copied VM on the question, or nil.
func coordQuestionPowerOn(ctx *Context, vm *VirtualMachine) soap.HasFault {
	if _, copied := coordCopied.Load(vm.Self.Value); !copied || vm.Runtime.Question != nil {
		return nil
	}
	runner := &powerVMTask{vm, types.VirtualMachinePowerStatePoweredOn, ctx}
	task := CreateTask(runner.Reference(), "powerOn", runner.Run)
	Map.Update(task, []types.PropertyChange{
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.startTime", Val: time.Now()},
	})
	choices := []types.BaseElementDescription{
		&types.ElementDescription{Key: coordAnswerCancel, Description: types.Description{Label: "Cancel", Summary: "Cancel"}},
		&types.ElementDescription{Key: coordAnswerMoved, Description: types.Description{Label: "I Moved It", Summary: "I Moved It"}},
		&types.ElementDescription{Key: coordAnswerCopied, Description: types.Description{Label: "I Copied It", Summary: "I Copied It"}},
	}
	question := &types.VirtualMachineQuestionInfo{
		Id:     task.Self.Value,
		Text:   "msg.uuid.altered:This virtual machine might have been moved or copied.",
		Choice: types.ChoiceOption{ChoiceInfo: choices, DefaultIndex: 2},
	}
	Map.Update(vm, []types.PropertyChange{{Name: "runtime.question", Val: question}})
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: task.Self}}
}

// AnswerVM answers the question and lets the held power-on go on (or fail, on cancel).
func (vm *VirtualMachine) AnswerVM(ctx *Context, req *types.AnswerVM) soap.HasFault {
	body := &methods.AnswerVMBody{}
	q := vm.Runtime.Question
	if q == nil || q.Id != req.QuestionId {
		body.Fault_ = Fault("no such question", &types.InvalidArgument{InvalidProperty: "questionId"})
		return body
	}
	task, ok := Map.Get(types.ManagedObjectReference{Type: "Task", Value: q.Id}).(*Task)
	if !ok {
		body.Fault_ = Fault("the question's task is gone", &types.InvalidState{})
		return body
	}
	switch req.AnswerChoice {
	case coordAnswerCopied:
		coordNewIdentity(vm)
	case coordAnswerMoved:
	case coordAnswerCancel:
		task.Execute = func(*Task) (types.AnyType, types.BaseMethodFault) {
			return nil, &types.RequestCanceled{}
		}
	default:
		body.Fault_ = Fault("no such choice", &types.InvalidArgument{InvalidProperty: "answerChoice"})
		return body
	}
	coordCopied.Delete(vm.Self.Value)
	Map.Update(vm, []types.PropertyChange{{Name: "runtime.question", Val: nil}})
	task.Run()
	body.Res = &types.AnswerVMResponse{}
	return body
}

// coordNewIdentity is what "I copied it" does: a new BIOS UUID, and MACs derived from it.
func coordNewIdentity(vm *VirtualMachine) {
	vm.uid = uuid.New()
	vm.Config.Uuid = vm.uid.String()
	for _, device := range vm.Config.Hardware.Device {
		if nic, ok := device.(types.BaseVirtualEthernetCard); ok {
			card := nic.GetVirtualEthernetCard()
			if card.UnitNumber != nil {
				card.MacAddress = vm.generateMAC(*card.UnitNumber - 7)
			}
		}
	}
	Map.Update(vm, []types.PropertyChange{{Name: "config.uuid", Val: vm.Config.Uuid}})
}

// coordNasURL is where a NAS datastore's files are: localPath when it is a directory
// (0.24.2's convention, which the rig's -nfs flag uses), else the export itself.
func coordNasURL(spec types.HostNasVolumeSpec) string {
	if path.IsAbs(spec.LocalPath) {
		return spec.LocalPath
	}
	return spec.RemotePath
}

// RemoveDatastore unmounts a datastore from this host.
func (dss *HostDatastoreSystem) RemoveDatastore(ctx *Context, req *types.RemoveDatastore) soap.HasFault {
	body := &methods.RemoveDatastoreBody{}
	ds, ok := Map.Get(req.Datastore).(*Datastore)
	if !ok || FindReference(dss.Datastore, req.Datastore) == nil {
		body.Fault_ = Fault("", &types.NotFound{})
		return body
	}
	if len(ds.Vm) != 0 {
		body.Fault_ = Fault("", &types.ResourceInUse{Type: ds.Self.Type, Name: ds.Name})
		return body
	}
	host := Map.Get(dss.Host.Self).(*HostSystem)
	coordDropDatastore(dss, ds.Self)
	parent := hostParent(&host.HostSystem)
	Map.RemoveReference(parent, &parent.Datastore, ds.Self)
	for _, e := range Map.All("HostSystem") {
		if FindReference(e.(*HostSystem).Datastore, ds.Self) != nil {
			body.Res = &types.RemoveDatastoreResponse{}
			return body // still mounted elsewhere
		}
	}
	if f, ok := asFolderMO(Map.Get(*ds.Parent)); ok {
		folderRemoveChild(ctx, f, ds.Self)
	}
	if dc := Map.getEntityDatacenter(host); dc != nil {
		Map.RemoveReference(dc, &dc.Datastore, ds.Self)
	}
	body.Res = &types.RemoveDatastoreResponse{}
	return body
}

// coordDropDatastore takes a datastore off a host's datastore system and so off the host:
// add() keeps the two lists the same. Callers serialise it: RemoveDatastore runs under
// dss's own lock, the VMFS double's unmount under coordVmfsMu.
func coordDropDatastore(dss *HostDatastoreSystem, ds types.ManagedObjectReference) {
	kept := dss.Datastore[:0:0]
	for _, ref := range dss.Datastore {
		if ref != ds {
			kept = append(kept, ref)
		}
	}
	dss.Datastore = kept
	dss.Host.Datastore = kept
}
