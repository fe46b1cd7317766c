// Test-rig additions to govmomi 0.24.2's simulator package.
//
// This file is added to the package through `go build -overlay` (see build.py); the
// installed package is never modified. It models the VMware behaviour that 0.24.2 lacks
// and that truenas-vmware-coord must be tested against:
//
//   - a SOAP call counter hook (CoordCallHook) for round-trip assertions;
//   - strict snapshot rules (CoordStrict): a powered-on VM with PCI passthrough refuses
//     snapshots with SnapshotIncompatibleDeviceInVm, a memory snapshot of a VM with an
//     independent disk fails with MemorySnapshotOnIndependentDisk, and a quiesce request
//     on a VM whose Tools are not running yields quiesced=false (VMware ignores it);
//   - per-VM behaviour through the real API, from the VM's extraConfig:
//     vcsim.fault.<Method> = <fault type>  the task of that call fails with that fault
//     vcsim.delay.<Method> = <ms>          the SOAP reply of that call is held back
//     vcsim.async.<Method> = <ms>          the task returns running, completes after ms
//     (Method: CreateSnapshot_Task, CreateSnapshotEx_Task, RemoveSnapshot_Task; a
//     CreateSnapshot_Task setting applies to CreateSnapshotEx_Task too);
//   - CancelTask for such asynchronous tasks, CreateSnapshotEx_Task and
//     SearchIndex.FindAllByUuid, which 0.24.2 does not implement.

package simulator

import (
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CoordCallHook, when set, is called with the name of every SOAP method served.
var CoordCallHook func(method string)

// CoordStrict turns on the snapshot rules described above.
var CoordStrict bool

// CoordNoSnapshotEx makes CreateSnapshotEx_Task answer MethodNotFound, as 0.24.2 itself
// (and a server older than 6.5) does, so a client's fallback can be tested too.
var CoordNoSnapshotEx bool

var coordCancelled sync.Map // task moref value -> true

func coordExtra(vm *VirtualMachine, key string) string {
	if vm == nil || vm.Config == nil {
		return ""
	}
	for _, o := range vm.Config.ExtraConfig {
		if v := o.GetOptionValue(); v != nil && v.Key == key {
			if s, ok := v.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}

// coordSetting reads "<prefix>.<method>"; a CreateSnapshot_Task setting also applies to
// CreateSnapshotEx_Task, which is the same operation with a quiesce spec.
func coordSetting(vm *VirtualMachine, prefix, method string) string {
	if v := coordExtra(vm, prefix+"."+method); v != "" {
		return v
	}
	if method == "CreateSnapshotEx_Task" {
		return coordExtra(vm, prefix+".CreateSnapshot_Task")
	}
	return ""
}

func coordMillis(vm *VirtualMachine, prefix, method string) time.Duration {
	ms, err := strconv.Atoi(coordSetting(vm, prefix, method))
	if err != nil || ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// coordSetExtraConfig sets one extraConfig option the way vSphere does.
func coordSetExtraConfig(options []types.BaseOptionValue, c types.BaseOptionValue) []types.BaseOptionValue {
	set := c.GetOptionValue()
	out := options[:0:0]
	for _, o := range options {
		if o.GetOptionValue().Key != set.Key {
			out = append(out, o)
		}
	}
	if s, ok := set.Value.(string); ok && s == "" {
		return out
	}
	return append(out, c)
}

// coordInjectedFault builds the fault named by extraConfig "vcsim.fault.<method>".
func coordInjectedFault(vm *VirtualMachine, method string) types.BaseMethodFault {
	name := coordSetting(vm, "vcsim.fault", method)
	if name == "" {
		return nil
	}
	if t, ok := types.TypeFunc()(name); ok {
		if f, ok := reflect.New(t).Interface().(types.BaseMethodFault); ok {
			return f
		}
	}
	return &types.SystemError{Reason: "vcsim: unknown injected fault type " + name}
}

func coordPoweredOn(vm *VirtualMachine) bool {
	return vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
}

func coordToolsRunning(vm *VirtualMachine) bool {
	return vm.Guest != nil &&
		vm.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
}

// coordCreateFault is the fault a snapshot create of vm must fail with, or nil.
func coordCreateFault(vm *VirtualMachine, method string, memory bool) types.BaseMethodFault {
	if f := coordInjectedFault(vm, method); f != nil {
		return f
	}
	if !CoordStrict || vm.Config == nil {
		return nil
	}
	for _, d := range vm.Config.Hardware.Device {
		switch dev := d.(type) {
		case *types.VirtualPCIPassthrough:
			if coordPoweredOn(vm) {
				// The nested fault is required by the WSDL; pyVmomi rejects the task
				// info without it.
				label := ""
				if info := dev.GetVirtualDevice().DeviceInfo; info != nil {
					label = info.GetDescription().Label
				}
				return &types.SnapshotIncompatibleDeviceInVm{Fault: types.LocalizedMethodFault{
					Fault:            &types.NotSupported{},
					LocalizedMessage: "device " + label + " does not support snapshots",
				}}
			}
		case *types.VirtualDisk:
			mode := ""
			if b, ok := dev.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				mode = b.DiskMode
			}
			independent := mode == string(types.VirtualDiskModeIndependent_persistent) ||
				mode == string(types.VirtualDiskModeIndependent_nonpersistent)
			if memory && independent && coordPoweredOn(vm) {
				return &types.MemorySnapshotOnIndependentDisk{}
			}
		}
	}
	return nil
}

// coordQuiesced is what VMware records: quiesce is ignored without running Tools.
func coordQuiesced(vm *VirtualMachine, requested bool) bool {
	if !CoordStrict {
		return requested
	}
	return requested && coordPoweredOn(vm) && coordToolsRunning(vm)
}

// coordRun runs a task as the VM's extraConfig says: synchronously (the 0.24.2 default),
// after holding the reply back, or asynchronously. lock is the object the task body
// expects to be locked when it runs outside the SOAP call, or nil.
func coordRun(vm *VirtualMachine, method string, task *Task, lock mo.Reference) types.ManagedObjectReference {
	if d := coordMillis(vm, "vcsim.delay", method); d > 0 {
		time.Sleep(d)
	}
	d := coordMillis(vm, "vcsim.async", method)
	if d <= 0 {
		return task.Run()
	}
	Map.Update(task, []types.PropertyChange{
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.cancelable", Val: true},
		{Name: "info.startTime", Val: time.Now()},
	})
	go func() {
		time.Sleep(d)
		if _, cancelled := coordCancelled.Load(task.Self.Value); cancelled {
			return
		}
		if lock != nil {
			Map.WithLock(lock, func() { task.Run() })
		} else {
			task.Run()
		}
	}()
	return task.Self
}

// CancelTask cancels a task that is still running (only asynchronous ones can be).
func (t *Task) CancelTask(ctx *Context, req *types.CancelTask) soap.HasFault {
	body := &methods.CancelTaskBody{}
	if t.Info.State != types.TaskInfoStateRunning && t.Info.State != types.TaskInfoStateQueued {
		body.Fault_ = Fault("task is not running", &types.InvalidState{})
		return body
	}
	if _, loaded := coordCancelled.LoadOrStore(t.Self.Value, true); !loaded {
		Map.Update(t, []types.PropertyChange{
			{Name: "info.cancelled", Val: true},
			{Name: "info.completeTime", Val: time.Now()},
			{Name: "info.state", Val: types.TaskInfoStateError},
			{Name: "info.error", Val: types.LocalizedMethodFault{
				Fault: &types.RequestCanceled{}, LocalizedMessage: "*types.RequestCanceled",
			}},
		})
	}
	body.Res = &types.CancelTaskResponse{}
	return body
}

// CreateSnapshotExTask maps the 6.5 method onto CreateSnapshot_Task: any quiesce spec
// requests a quiesced snapshot (the simulator has no guest to apply a VSS context to).
func (vm *VirtualMachine) CreateSnapshotExTask(req *types.CreateSnapshotEx_Task) soap.HasFault {
	if CoordNoSnapshotEx {
		return &methods.CreateSnapshotEx_TaskBody{Fault_: Fault("CreateSnapshotEx_Task",
			&types.MethodNotFound{Receiver: vm.Self, Method: "CreateSnapshotEx_Task"})}
	}
	res := vm.coordCreateSnapshot("CreateSnapshotEx_Task", &types.CreateSnapshot_Task{
		This:        req.This,
		Name:        req.Name,
		Description: req.Description,
		Memory:      req.Memory,
		Quiesce:     req.QuiesceSpec != nil,
	})
	return &methods.CreateSnapshotEx_TaskBody{
		Res: &types.CreateSnapshotEx_TaskResponse{Returnval: res},
	}
}

// FindAllByUuid is FindByUuid returning every match (used by the stock-faithful baseline).
func (s *SearchIndex) FindAllByUuid(req *types.FindAllByUuid) soap.HasFault {
	body := &methods.FindAllByUuidBody{Res: new(types.FindAllByUuidResponse)}
	instance := req.InstanceUuid != nil && *req.InstanceUuid
	for _, e := range Map.All("VirtualMachine") {
		vm := e.(*VirtualMachine)
		if vm.Config == nil {
			continue
		}
		if (instance && vm.Config.InstanceUuid == req.Uuid) || (!instance && vm.Config.Uuid == req.Uuid) {
			body.Res.Returnval = append(body.Res.Returnval, vm.Self)
		}
	}
	return body
}
