// The Restore view: a coordinated snapshot's VMs and what each would be restored to (the
// preview), the restore job with its progress, the restores with their cleanup, attach-disk.
// Every answer comes from the vmware_coord.restore* methods; errors go next to the field they name.
import { el, showErrors, clearErrors } from "./fields.js";

const field = (name, label, control, help) => el("div", { class: "field", "data-field": name },
  el("label", { for: control.id, text: label }), control, help ? el("p", { class: "help", text: help }) : null,
  el("p", { class: "error", "aria-live": "polite" }));

// Positional arguments are named alone ("disk"); showErrors expects a schema's name first.
const positional = (errors) => (errors || []).map(({ field: f, message }) => ({ field: `args.${f}`, message }));

const revertTo = (vm) => (vm.revert_to
  ? el("div", {}, el("div", { text: "revert to VMware snapshot" }), el("code", { text: vm.revert_to }))
  : el("div", { text: vm.achieved === "power_off" || vm.achieved === "suspend" ? "no revert: consistent by policy" : "no revert: crash-consistent" }));

export async function showRestore(panel, { rpc, status, table, badge, follow }) {
  const mappings = await rpc.call("vmware.query");
  const datasets = [...new Set(mappings.map((m) => m.filesystem))];
  const dataset = el("select", { id: "restore-dataset" }, ...datasets.map((d) => el("option", { value: d, text: d })));
  const snapshot = el("select", { id: "restore-snapshot", "data-name": "snapshot" });
  const vmsBox = el("div", { class: "restore-vms", "aria-live": "polite", "data-name": "vm" });
  const newName = el("input", { id: "restore-new-name", type: "text", "data-name": "new_name" });
  const host = el("select", { id: "restore-host", "data-name": "host" });
  const powerOn = el("input", { id: "restore-power-on", type: "checkbox", "data-name": "power_on" });
  const connectNetwork = el("input", { id: "restore-connect-network", type: "checkbox", "data-name": "connect_network" });
  const progress = el("progress", { id: "restore-progress", max: 100, value: 0, "aria-label": "progress of the restore" });
  const progressText = el("p", { id: "restore-progress-text", "aria-live": "polite" });
  const list = el("div", { id: "restore-list" });
  let preview = null;
  // How the host reaches the clone: a filesystem's NFS share, or a zvol's new LUN.
  const VIA = { nfs: "over NFS", vmfs: "new iSCSI LUN, VMFS resignatured" };

  const findSnapshots = async () => {
    try {
      const found = await rpc.call("vmware_coord.restore_snapshots", [dataset.value]);
      snapshot.replaceChildren(...found.map((s) => el("option", { value: s.snapshot,
        text: `${s.snapshot} (${s.vms} VMs, vmsynced ${s.vmsynced ? "Y" : "N"})` })));
      status(found.length ? `${found.length} coordinated snapshots of ${dataset.value}` : `No coordinated snapshot of ${dataset.value}`,
        found.length ? "ok" : "warn");
    } catch (e) { status(e.message, "error"); }
  };

  const showPreview = async () => {
    clearErrors(form);
    try {
      preview = await rpc.call("vmware_coord.restore_preview", [snapshot.value, null]);
    } catch (e) {
      const unplaced = showErrors(form, positional(e.fieldErrors));
      status([e.message, ...unplaced].join("; "), "error");
      return;
    }
    const rows = preview.vms.map((vm) => [
      el("input", { type: "checkbox", name: "restore-vm", value: vm.name, "aria-label": `restore ${vm.name}`,
        disabled: Boolean(vm.problem), checked: !vm.problem && preview.vms.length === 1 }),
      vm.name, badge(vm.consistency ?? "–", vm.revert_to ? "good" : "neutral"), revertTo(vm),
      vm.point, vm.host ? `${vm.host} (${VIA[vm.transport] ?? vm.transport})` : "–", vm.default_new_name,
      vm.problem ? el("span", { class: "error-text", text: vm.problem }) : badge("restorable", "good")]);
    vmsBox.replaceChildren(table(["", "VM", "consistency", "restored to", "point", "host", "new name", ""], rows,
      `VMs of ${preview.snapshot} (run ${preview.run_id})`));
    const hosts = [...new Set(preview.vms.flatMap((vm) => vm.hosts))].sort();
    host.replaceChildren(el("option", { value: "", text: "each VM's own (default)" }),
      ...hosts.map((h) => el("option", { value: h, text: h })));
    status(`Preview of ${preview.snapshot}: nothing was made`, "ok");
  };

  const restore = async (event) => {
    event.preventDefault();
    clearErrors(form);
    const chosen = [...vmsBox.querySelectorAll("input[name=restore-vm]:checked")].map((c) => c.value);
    if (!chosen.length) { status("Pick the VMs to restore", "error"); return; }
    if (newName.value && chosen.length > 1) {
      showErrors(form, [{ field: "x.new_name", message: "a new name applies to one VM: pick one, or leave it empty" }]);
      return;
    }
    for (const vm of chosen) {
      const request = { snapshot: snapshot.value, vm, power_on: powerOn.checked, connect_network: connectNetwork.checked };
      if (newName.value) request.new_name = newName.value;
      if (host.value) request.host = host.value;
      status(`Restoring ${vm}…`);
      try {
        const done = await rpc.job("vmware_coord.restore", [request], (job) => {
          follow(job);
          progress.value = job.progress?.percent ?? 0;
          progressText.textContent = `${vm}: ${job.progress?.percent ?? 0}% ${job.progress?.description || job.state}`;
        });
        status(`Restored ${vm} as ${done.plan.new_name}: ${done.plan.point}`, "ok");
      } catch (e) {
        const unplaced = showErrors(form, e.fieldErrors || []);
        status(`${vm} not restored: ${[e.message, ...unplaced].join("; ")}`, "error");
        break;
      }
    }
    await showList();
  };

  const cleanup = async (r, force, out) => {
    const what = `${r.plan.new_name}, its datastore ${r.plan.datastore}, its share and the clone ${r.plan.clone}`;
    if (!confirm(force ? `Power off ${r.plan.new_name} and clean up restore ${r.restore_id} (${what})?`
      : `Clean up restore ${r.restore_id}: ${what} are taken away?`)) return;
    status(`Cleaning up ${r.restore_id}…`);
    try {
      await rpc.job("vmware_coord.restore_cleanup", [r.restore_id, force], follow);
      status(`Restore ${r.restore_id} cleaned up: nothing of it is left`, "ok");
      await showList();
    } catch (e) {
      const onForce = (e.fieldErrors || []).find((f) => f.field === "force");
      if (!onForce) { status(`Not cleaned up: ${e.message}`, "error"); return; }
      out.replaceChildren(el("span", { class: "error-text", text: onForce.message }),
        el("button", { type: "button", class: "danger", onclick: () => cleanup(r, true, out) }, "Force cleanup"));
      status(`Not cleaned up: ${onForce.message}`, "error");
    }
  };

  const showList = async () => {
    const restores = await rpc.call("vmware_coord.restore_list", [50]);
    const rows = restores.map((r) => {
      const out = el("div", { class: "row", "data-restore": r.restore_id });
      const present = ["restoring", "restored", "cleaning"].includes(r.state);
      if (present) out.append(el("button", { type: "button", class: "danger", "aria-label": `Cleanup restore ${r.restore_id}`,
        onclick: () => cleanup(r, false, out) }, "Cleanup"));
      return [r.restore_id, r.plan.vm_name, r.plan.new_name, r.plan.snapshot, r.plan.host_name,
        badge(r.state, r.state === "restored" ? "good" : present ? "warn" : "neutral"), r.error ?? "", out];
    });
    const restored = restores.filter((r) => r.state === "restored");
    attachRestore.replaceChildren(...restored.map((r) => el("option", { value: r.restore_id, text: `${r.restore_id} (${r.plan.new_name})` })));
    list.replaceChildren(table(["restore", "VM", "copy", "snapshot", "host", "state", "", ""], rows, "Restores"));
  };

  const attachRestore = el("select", { id: "attach-restore", "data-name": "restore_id" });
  const attachDisk = el("input", { id: "attach-disk", type: "number", min: 0, value: 0, "data-name": "disk" });
  const attachTo = el("input", { id: "attach-to", type: "text", "data-name": "to" });
  const attachWritable = el("input", { id: "attach-writable", type: "checkbox", "data-name": "writable" });
  const attachForm = el("form", { id: "attach-form", novalidate: true, class: "schema-form" },
    field("restore_id", "Restore", attachRestore), field("disk", "Disk", attachDisk, "its position, 0 is the first"),
    field("to", "Attach to VM", attachTo, "a VM on the copy's host"),
    field("writable", "Writable", attachWritable, "off: what the VM writes is thrown away"),
    el("div", { class: "row actions" }, el("button", { type: "submit" }, "Attach disk")));
  attachForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(attachForm);
    try {
      const done = await rpc.call("vmware_coord.restore_attach_disk",
        [attachRestore.value, Number(attachDisk.value), attachTo.value, attachWritable.checked]);
      status(done.notes.join("; "), "ok");
    } catch (e) {
      const unplaced = showErrors(attachForm, positional(e.fieldErrors));
      status(`Not attached: ${[e.message, ...unplaced].join("; ")}`, "error");
    }
  });

  const form = el("form", { id: "restore-form", novalidate: true, class: "schema-form" },
    field("snapshot", "Coordinated snapshot", snapshot),
    el("div", { class: "row actions" }, el("button", { type: "button", onclick: showPreview }, "Preview")),
    el("div", { class: "field wide", "data-field": "vm" }, vmsBox, el("p", { class: "error", "aria-live": "polite" })),
    field("new_name", "New name", newName, "empty: <vm>-restored-<restore id>; one VM only"),
    field("host", "Host", host, "an ESXi host that mounts this NAS"),
    field("power_on", "Power on", powerOn, "its NICs stay disconnected unless asked"),
    field("connect_network", "Connect network", connectNetwork, "off: a copy must not take its original's address"),
    el("div", { class: "row actions" }, el("button", { type: "submit", class: "primary" }, "Restore")),
    el("div", { class: "actions" }, progress, progressText));
  form.addEventListener("submit", restore);

  panel.replaceChildren(el("h2", { text: "Restore a VM from a coordinated snapshot" }),
    el("section", { class: "card" },
      el("div", { class: "row" }, el("label", { for: "restore-dataset", text: "Dataset" }), dataset,
        el("button", { type: "button", onclick: findSnapshots }, "Find snapshots")), form),
    el("section", { class: "card" }, el("h3", { text: "Restores" }), list),
    el("section", { class: "card" }, el("h3", { text: "Attach a restored disk to another VM" }), attachForm));
  await showList();
  if (datasets.length) await findSnapshots();
}
