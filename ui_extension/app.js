// The VMware snapshot coordination page: mappings and their plan, policies, runs, restore,
// endpoint trust.
// Everything it shows comes from the middleware API; forms come from generated/forms.json.
import { Rpc } from "./rpc.js";
import { el, renderForm, collect, fill, showErrors, clearErrors } from "./fields.js";
import { showRestore } from "./restore.js";

const state = { rpc: null, forms: null, mappings: [], policies: [] };
const $ = (selector) => document.querySelector(selector);

function status(message, kind = "info") {
  const box = $("#status");
  box.className = `status ${kind}`;
  box.textContent = message;
}

function table(headers, rows, caption) {
  return el("table", {}, caption ? el("caption", { text: caption }) : null,
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c instanceof Node ? c : String(c ?? "–")))))));
}

const badge = (text, kind) => el("span", { class: `badge ${kind}`, text });
const consistencyBadge = (value, ok) => badge(value, ok === false ? "bad" : ok ? "good" : "neutral");

// --- navigation --------------------------------------------------------------------------

const views = {
  plan: showPlanView, policies: showPolicies, runs: showRuns, trust: showTrust,
  // the last job's progress is kept for the Runs view too
  restore: () => showRestore($("#view-restore"), { rpc: state.rpc, status, table, badge, follow: (job) => { state.lastJob = job; } }),
};

// The view on screen: choosing its tab again keeps what it shows (a plan just asked for is not
// wiped by a second render of the list).
let shown = null;

function activate(name) {
  if (name === shown) return;
  shown = name;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.view === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  for (const panel of document.querySelectorAll("[role=tabpanel]")) panel.hidden = panel.id !== `view-${name}`;
  history.replaceState(null, "", `#${name}`);
  views[name]().catch((e) => status(e.message, "error"));
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => activate(tab.dataset.view));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      activate(next.dataset.view);
    });
  });
}

// --- mappings and plan -------------------------------------------------------------------

function planTable(plan, previous) {
  const before = new Map((previous?.vms || []).map((v) => [v.key, v]));
  const rows = plan.vms.map((vm) => {
    const decision = vm.policy || {};
    const old = before.get(vm.key)?.policy;
    const ladder = (decision.ladder || []).join(" → ") || "nothing to do";
    const changed = old && (old.policy !== decision.policy || (old.ladder || []).join() !== (decision.ladder || []).join());
    const was = changed ? el("div", { class: "was", text: `was: ${(old.ladder || []).join(" → ") || "nothing to do"} (${old.policy ?? "default"})` }) : null;
    return [vm.facts.name, vm.facts.provider ?? "vsphere", vm.facts.power_state, decision.policy ?? "default",
      el("div", {}, el("span", { text: ladder }), changed ? badge("changes", "warn") : null, was),
      vm.blockers.map((b) => b.kind).join(", ") || "–",
      el("div", {}, ...[decision.summary || vm.status_reason,
        ...(decision.pruned || []).map((p) => p.reason).filter((r) => !(decision.summary || "").includes(r))]
        .filter(Boolean).map((t) => el("div", { text: t })))];
  });
  const box = el("div", { class: "plan" }, table(["VM", "kind", "power", "policy", "planned", "blockers", "why"], rows,
    `${plan.summary.vms} VMs on ${plan.summary.datastores} datastores of ${plan.dataset}`));
  for (const w of plan.warnings || []) box.append(el("p", { class: "warning", text: w }));
  for (const [endpoint, message] of Object.entries(plan.endpoint_errors || {})) box.append(el("p", { class: "error-text", text: `${endpoint}: ${message}` }));
  return box;
}

async function showPlanView() {
  state.mappings = await state.rpc.call("vmware.query");
  const panel = $("#view-plan");
  panel.replaceChildren(el("h2", { text: "Mappings and their plan" }));
  if (!state.mappings.length) panel.append(el("p", { text: "No VMware-Snapshots mapping is configured yet." }));
  for (const m of state.mappings) {
    const out = el("div", { class: "plan-output", "aria-live": "polite" });
    const button = el("button", { type: "button", onclick: async () => {
      button.disabled = true;
      status(`Planning ${m.filesystem}…`);
      try {
        const plan = await state.rpc.call("vmware_coord.plan", [m.filesystem, false, []]);
        out.replaceChildren(planTable(plan));
        status(`Plan for ${m.filesystem}: ${plan.summary.vms} VMs`, "ok");
      } catch (e) { status(e.message, "error"); } finally { button.disabled = false; }
    } }, "Show plan");
    panel.append(el("section", { class: "card", "aria-label": `mapping ${m.datastore}` },
      el("h3", { text: `${m.datastore} ⇄ ${m.filesystem}` }),
      el("p", { class: "muted", text: `${m.username}@${m.hostname}` }), button, out));
  }
}

// --- policies ----------------------------------------------------------------------------

async function loadPolicies() {
  state.policies = (await state.rpc.call("vmware_coord.policy.query")).sort((a, b) => a.priority - b.priority);
  return state.policies;
}

async function movePolicy(index, step) {
  // Swap two priorities through a free one, so that they stay unique at every step.
  const a = state.policies[index];
  const b = state.policies[index + step];
  const free = Math.max(...state.policies.map((p) => p.priority)) + 1;
  try {
    await state.rpc.call("vmware_coord.policy.update", [a.id, { priority: free }]);
    await state.rpc.call("vmware_coord.policy.update", [b.id, { priority: a.priority }]);
    await state.rpc.call("vmware_coord.policy.update", [a.id, { priority: b.priority }]);
    status(`Moved '${a.name}' ${step < 0 ? "up" : "down"}`, "ok");
  } catch (e) { status(`Reordering failed: ${e.message}`, "error"); }
  await showPolicies();
  document.querySelector(`[data-policy="${a.id}"] button[aria-label^="move"]`)?.focus();
}

async function showPolicies() {
  const panel = $("#view-policies");
  const policies = await loadPolicies();
  const rows = policies.map((p, i) => [p.priority, p.name, p.enabled ? "yes" : "no", p.ladder.join(" → "),
    JSON.stringify(p.match || {}),
    el("div", { class: "row", "data-policy": p.id },
      el("button", { type: "button", class: "icon", "aria-label": `move ${p.name} up`, disabled: i === 0, onclick: () => movePolicy(i, -1) }, "↑"),
      el("button", { type: "button", class: "icon", "aria-label": `move ${p.name} down`, disabled: i === policies.length - 1, onclick: () => movePolicy(i, 1) }, "↓"),
      el("button", { type: "button", onclick: () => editPolicy(p) }, "Edit"),
      el("button", { type: "button", class: "danger", onclick: () => deletePolicy(p) }, "Delete"))]);
  panel.replaceChildren(el("h2", { text: "Per-VM policies" }),
    el("p", { class: "muted", text: "The first enabled policy that matches a VM decides (lowest priority number first); VMs no policy matches get the default policy." }),
    table(["priority", "name", "enabled", "ladder", "match", ""], rows, "Policies in the order they are tried"),
    el("button", { type: "button", class: "primary", onclick: () => editPolicy(null) }, "New policy"),
    el("div", { id: "policy-editor" }));
}

async function deletePolicy(policy) {
  if (!confirm(`Delete policy '${policy.name}'?`)) return;
  try {
    await state.rpc.call("vmware_coord.policy.delete", [policy.id]);
    status(`Deleted '${policy.name}'`, "ok");
  } catch (e) { status(`Delete failed: ${e.message}`, "error"); }
  await showPolicies();
}

function editPolicy(policy) {
  const form = renderForm(state.forms.policy, "policy-form");
  if (policy) fill(form, policy);
  else form.querySelector("[data-name=priority]").value = Math.max(0, ...state.policies.map((p) => p.priority)) + 10;
  const preview = el("div", { class: "preview", "aria-live": "polite" });
  const mappingSelect = el("select", { id: "preview-mapping", "aria-label": "dataset to preview" },
    ...state.mappings.map((m) => el("option", { value: m.filesystem, text: m.filesystem })));
  const save = async (event) => {
    event.preventDefault();
    clearErrors(form);
    const doc = collect(form);
    try {
      // Nothing is shown as saved until the server says so.
      const saved = policy
        ? await state.rpc.call("vmware_coord.policy.update", [policy.id, doc])
        : await state.rpc.call("vmware_coord.policy.create", [doc]);
      status(`Saved policy '${saved.name}'`, "ok");
      await showPolicies();
    } catch (e) {
      const unplaced = showErrors(form, e.fieldErrors || []);
      status(`Not saved: ${[e.message, ...unplaced].join("; ")}`, "error");
    }
  };
  const previewPlan = async () => {
    clearErrors(form);
    const dataset = mappingSelect.value;
    try {
      const current = await state.rpc.call("vmware_coord.plan", [dataset, false, []]);
      const draft = await state.rpc.call("vmware_coord.plan", [dataset, false, [], { policy: collect(form), id: policy?.id ?? null }]);
      preview.replaceChildren(el("h3", { text: "If this policy is saved" }), planTable(draft, current));
      status("Preview ready: nothing was saved", "ok");
    } catch (e) {
      const unplaced = showErrors(form, e.fieldErrors || []);
      status(`Cannot preview: ${[e.message, ...unplaced].join("; ")}`, "error");
    }
  };
  form.addEventListener("submit", save);
  form.append(el("div", { class: "row actions" },
    el("button", { type: "submit", class: "primary" }, policy ? "Save changes" : "Create policy"),
    el("label", { for: "preview-mapping", text: "Preview on" }), mappingSelect,
    el("button", { type: "button", onclick: previewPlan }, "Preview plan"),
    el("button", { type: "button", onclick: () => $("#policy-editor").replaceChildren() }, "Cancel")));
  $("#policy-editor").replaceChildren(el("h3", { text: policy ? `Edit '${policy.name}'` : "New policy" }), form, preview);
  form.querySelector("[data-name]").focus();
}

// --- runs --------------------------------------------------------------------------------

function manifestView(report) {
  const rows = report.vms.map((vm) => [vm.name, vm.provider ?? "vsphere", vm.policy, vm.achieved ?? "–",
    consistencyBadge(vm.consistency, vm.compliant),
    vm.required, vm.quiesced === null ? "–" : vm.quiesced ? "yes" : "no", vm.undo ?? "–",
    el("div", {}, ...[vm.answer, ...vm.reasons].filter(Boolean).map((r) => el("div", { text: r })))]);
  return el("section", { class: "card", "aria-label": `manifest of run ${report.run_id}` },
    el("h3", { text: `Run ${report.run_id}: ${report.snapshot ?? report.dataset}` }),
    el("p", {}, badge(`vmsynced ${report.vmsynced ? "Y" : "N"}`, report.vmsynced ? "good" : "bad"),
      ` begin phase ${Number(report.begin_seconds).toFixed(2)} s`),
    table(["VM", "kind", "policy", "achieved", "consistency", "requires", "quiesced", "undo", "reasons"], rows),
    ...Object.entries(report.endpoint_errors || {}).map(([e, m]) => el("p", { class: "error-text", text: `${e}: ${m}` })),
    ...(report.leftovers || []).map((l) => el("p", { class: "warning", text: `left for reconcile: ${l}` })));
}

async function openManifest(key) {
  const report = await state.rpc.call("vmware_coord.manifest", [key]);
  $("#manifest").replaceChildren(report ? manifestView(report) : el("p", { text: `No manifest for ${key}` }));
  $("#manifest").focus();
}

async function showRuns() {
  state.mappings = await state.rpc.call("vmware.query");
  const runs = await state.rpc.call("vmware_coord.runs", [20]);
  const progress = el("progress", { id: "run-progress", max: 100, value: 0, "aria-label": "progress of the running job" });
  const progressText = el("p", { id: "run-progress-text", "aria-live": "polite" });
  const dataset = el("select", { id: "run-dataset" }, ...state.mappings.map((m) => el("option", { value: m.filesystem, text: m.filesystem })));
  const follow = (job) => {
    state.lastJob = job;   // the last job's progress stays on screen after the list refreshes
    progress.value = job.progress?.percent ?? 0;
    progressText.textContent = `${job.method}: ${job.progress?.percent ?? 0}% ${job.progress?.description || job.state}`;
  };
  if (state.lastJob) follow(state.lastJob);
  const runNow = async () => {
    status(`Coordinated snapshot of ${dataset.value} running…`);
    try {
      const report = await state.rpc.job("vmware_coord.run", [dataset.value, false, null], follow);
      status(`Snapshot ${report.snapshot} taken, vmsynced ${report.vmsynced ? "Y" : "N"}`, report.vmsynced ? "ok" : "warn");
      await showRuns();
      await openManifest(report.run_id);
    } catch (e) { status(`Run failed: ${e.message}`, "error"); }
  };
  const reconcile = async () => {
    status("Reconciling…");
    try {
      const result = await state.rpc.job("vmware_coord.reconcile", [], follow);
      status(`Reconcile: ${result.undone.length} undone, ${result.swept.length} swept, ${result.still_open} still open`, result.still_open ? "warn" : "ok");
    } catch (e) { status(`Reconcile failed: ${e.message}`, "error"); }
  };
  const rows = runs.map((r) => [r.run_id, r.dataset, r.snapshot ?? "–", r.state, new Date(r.started_at * 1000).toLocaleString(),
    r.vmsynced === null || r.vmsynced === undefined ? "–" : badge(r.vmsynced ? "Y" : "N", r.vmsynced ? "good" : "bad"),
    el("button", { type: "button", onclick: () => openManifest(r.snapshot || r.run_id) }, "Manifest")]);
  const lookup = el("input", { id: "manifest-key", type: "text", placeholder: "tank/vmware@auto-2026-11-26_03-00" });
  $("#view-runs").replaceChildren(el("h2", { text: "Runs" }),
    el("section", { class: "card" }, el("h3", { text: "Coordinated snapshot now" }),
      el("div", { class: "row" }, el("label", { for: "run-dataset", text: "Dataset" }), dataset,
        el("button", { type: "button", class: "primary", onclick: runNow }, "Run now"),
        el("button", { type: "button", onclick: reconcile }, "Reconcile now")), progress, progressText),
    table(["run", "dataset", "snapshot", "state", "started", "vmsynced", ""], rows, "Recent runs"),
    el("div", { class: "row" }, el("label", { for: "manifest-key", text: "Manifest of a ZFS snapshot" }), lookup,
      el("button", { type: "button", onclick: () => openManifest(lookup.value) }, "Open")),
    el("div", { id: "manifest", tabindex: "-1" }));
}

// --- endpoint trust ----------------------------------------------------------------------

async function showTrust() {
  state.mappings = await state.rpc.call("vmware.query");
  const endpoints = await state.rpc.call("vmware_coord.endpoint.query");
  const hosts = [...new Set(state.mappings.map((m) => m.hostname))];
  const panel = $("#view-trust");
  panel.replaceChildren(el("h2", { text: "Endpoint trust" }),
    el("p", { class: "muted", text: "Certificates are verified: by the system CAs, or by a pinned SHA-256 fingerprint." }));
  for (const host of hosts) {
    const settings = endpoints.find((e) => e.hostname === host);
    const pinned = settings?.tls?.sha256_fingerprint;
    const out = el("div", { class: "fingerprint", "aria-live": "polite" });
    const read = async () => {
      try {
        const { sha256_fingerprint: fp } = await state.rpc.call("vmware_coord.endpoint.fingerprint", [host, settings?.port ?? 443]);
        const pin = el("button", { type: "button", class: "primary", onclick: async () => {
          if (!confirm(`Pin ${host} to the certificate ${fp}? Any other certificate will be refused.`)) return;
          try {
            const tls = { ...(settings?.tls || {}), sha256_fingerprint: fp };
            if (settings) await state.rpc.call("vmware_coord.endpoint.update", [settings.id, { tls }]);
            else await state.rpc.call("vmware_coord.endpoint.create", [{ hostname: host, tls }]);
            status(`Pinned ${host}`, "ok");
            await showTrust();
          } catch (e) { status(`Not pinned: ${e.message}`, "error"); }
        } }, "Pin this certificate");
        out.replaceChildren(el("code", { text: fp }), fp === pinned ? badge("pinned", "good") : pin);
      } catch (e) { out.replaceChildren(el("p", { class: "error-text", text: e.message })); }
    };
    panel.append(el("section", { class: "card", "aria-label": `endpoint ${host}` }, el("h3", { text: host }),
      el("p", {}, pinned ? el("span", {}, "Pinned: ", el("code", { text: pinned })) : "Verified by the system CAs (not pinned)"),
      el("button", { type: "button", onclick: read }, "Read certificate"), out));
  }
}

// --- start -------------------------------------------------------------------------------

const thisSite = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/current`;

async function connect(url, method, params) {
  const rpc = await new Rpc(url).connect();
  if (!(await rpc.call(method, params))) {
    rpc.socket.close();
    throw new Error("login refused");
  }
  rpc.onclose = () => status("Disconnected from the middleware", "error");
  return rpc;
}

async function start(rpc, how) {
  state.rpc = rpc;
  state.forms = await (await fetch("generated/forms.json")).json();
  $("#login").hidden = true;
  $("#app").hidden = false;
  status(`Connected (${how})`, "ok");
  activate(location.hash.slice(1) in views ? location.hash.slice(1) : "plan");
}

async function login(event) {
  event.preventDefault();
  try {
    const key = $("#api-key").value;
    const rpc = await connect($("#server").value || thisSite(), key ? "auth.login_with_api_key" : "auth.login",
      key ? [key] : [$("#username").value, $("#password").value]);
    await start(rpc, key ? "API key" : "user name and password");
  } catch (e) { status(e.message, "error"); }
}

// Served by the NAS (/_plugins/vmware_coord/), the page is on the TrueNAS web UI's own site and
// can use the session token the UI keeps in localStorage (ngx-webstorage, key "token"). It fails
// quietly (signed out, expired, or a STIG system refusing reusable tokens): the form is shown.
async function signInWithTheUiSession() {
  let token = null;
  try { token = JSON.parse(localStorage.getItem("ngx-webstorage|token") || "null"); } catch { return; }
  if (typeof token !== "string" || !token) return;
  try {
    await start(await connect(thisSite(), "auth.login_with_token", [token]), "TrueNAS session");
  } catch { status("Sign in to the middleware", "info"); }
}

setupTabs();
$("#login").addEventListener("submit", login);
signInWithTheUiSession();
