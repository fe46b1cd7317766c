// Forms rendered from generated/forms.json, which is generated from plugin/schemas/: labels,
// help, choices, defaults and bounds come from the API's own schemas, never from this file.

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
export { el };

const idFor = (form, name) => `${form}-${name.replaceAll(".", "-")}`;

function orderedChoices(field, id, describedBy) {
  // An ordered list (the ladder): add from the choices, move up or down, remove.
  const list = el("ol", { class: "ordered", id, "aria-describedby": describedBy, "data-name": field.name,
    "data-widget": "ordered_choices", tabindex: "-1" });
  const picker = el("select", { "aria-label": `${field.label}: strategy to add` },
    ...field.choices.map((c) => el("option", { value: c, text: c })));
  const render = (values) => {
    list.replaceChildren(...values.map((value, i) => el("li", { "data-value": value },
      el("span", { text: value }),
      el("button", { type: "button", class: "icon", "aria-label": `move ${value} up`, disabled: i === 0,
        onclick: () => render(move(values, i, -1)) }, "↑"),
      el("button", { type: "button", class: "icon", "aria-label": `move ${value} down`,
        disabled: i === values.length - 1, onclick: () => render(move(values, i, 1)) }, "↓"),
      el("button", { type: "button", class: "icon", "aria-label": `remove ${value}`,
        onclick: () => render(values.filter((_, j) => j !== i)) }, "×"))));
    list.values = values;
  };
  const move = (values, i, step) => {
    const copy = [...values];
    [copy[i], copy[i + step]] = [copy[i + step], copy[i]];
    return copy;
  };
  const add = el("button", { type: "button", onclick: () => {
    if (!list.values.includes(picker.value)) render([...list.values, picker.value]);
  } }, "Add");
  render(field.default || []);
  list.setValue = render;
  return el("div", { class: "ordered-widget" }, list, el("div", { class: "row" }, picker, add));
}

function input(field, id, describedBy) {
  const common = { id, name: field.name, "aria-describedby": describedBy, "data-name": field.name,
    "data-widget": field.widget, required: field.required };
  switch (field.widget) {
    case "checkbox":
      return el("input", { ...common, type: "checkbox", checked: field.default === true });
    case "select":
      return el("select", common, el("option", { value: "", text: field.nullable || !field.required ? "—" : "choose" }),
        ...field.choices.map((c) => el("option", { value: c, text: c, selected: field.default === c })));
    case "multiselect":
      return el("fieldset", { ...common, class: "choices" }, el("legend", { class: "sr-only", text: field.label }),
        ...field.choices.map((c) => el("label", {}, el("input", { type: "checkbox", value: c,
          checked: (field.default || []).includes(c) }), c)));
    case "ordered_choices":
      return orderedChoices(field, id, describedBy);
    case "number":
      return el("input", { ...common, type: "number", min: field.minimum, max: field.maximum,
        step: field.integer ? 1 : "any", value: field.default ?? "", placeholder: field.example ?? "" });
    case "textarea":
      return el("textarea", { ...common, rows: 4, placeholder: field.example ?? "" });
    default:
      return el("input", { ...common, type: "text", value: field.default ?? "", placeholder: field.example ?? "",
        pattern: field.pattern, maxlength: field.maxLength });
  }
}

export function renderForm(definition, formId, { only } = {}) {
  const fields = definition.fields.filter((f) => !only || only.some((p) => f.name === p || f.name.startsWith(`${p}.`)));
  const groups = new Map();
  for (const field of fields) {
    const group = field.name.includes(".") ? field.name.split(".")[0] : "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(field);
  }
  const form = el("form", { id: formId, novalidate: true, class: "schema-form" });
  form.definition = definition;
  for (const [group, members] of groups) {
    const box = group ? el("fieldset", { class: "group" }, el("legend", { text: group.replaceAll("_", " ") })) : form;
    for (const field of members) {
      const id = idFor(formId, field.name);
      const help = `${id}-help`;
      const error = `${id}-error`;
      const control = input(field, id, `${help} ${error}`);
      const label = el("label", { for: id, text: field.label + (field.required ? " *" : "") });
      box.append(el("div", { class: `field widget-${field.widget}`, "data-field": field.name },
        label, control, el("small", { id: help, class: "help", text: field.help }),
        el("p", { id: error, class: "error", role: "alert", "aria-live": "polite" })));
    }
    if (box !== form) form.append(box);
  }
  return form;
}

function readControl(control) {
  switch (control.dataset.widget) {
    case "checkbox": return control.checked;
    case "multiselect": return [...control.querySelectorAll("input:checked")].map((i) => i.value);
    case "ordered_choices": return control.values;
    case "number": return control.value === "" ? null : Number(control.value);
    default: return control.value === "" ? null : control.value;
  }
}

function writeControl(control, value) {
  switch (control.dataset.widget) {
    case "checkbox": control.checked = value === true; break;
    case "multiselect":
      for (const box of control.querySelectorAll("input")) box.checked = (value || []).includes(box.value);
      break;
    case "ordered_choices": control.setValue(value || []); break;
    default: control.value = value ?? "";
  }
}

const get = (doc, path) => path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), doc);

// The document the form describes: empty optional fields are left out; a nested object is
// only sent when one of its fields is set.
export function collect(form) {
  const doc = {};
  for (const control of form.querySelectorAll("[data-name]")) {
    if (control.closest("[data-name]") !== control) continue;
    const value = readControl(control);
    const field = form.definition.fields.find((f) => f.name === control.dataset.name);
    const empty = value === null || (Array.isArray(value) && value.length === 0 && !field.required);
    if (empty && !field.required) continue;
    const parts = field.name.split(".");
    let node = doc;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)] = value;
  }
  return doc;
}

export function fill(form, doc) {
  for (const control of form.querySelectorAll("[data-name]")) {
    const value = get(doc, control.dataset.name);
    if (value !== undefined) writeControl(control, value);
  }
}

// Server-side errors shown on the field they name ("vmware_coord_policy_create.match.name_regex").
export function showErrors(form, fieldErrors) {
  clearErrors(form);
  const unplaced = [];
  for (const { field, message } of fieldErrors) {
    const path = field.split(".").slice(1).join(".");
    const box = [...form.querySelectorAll("[data-field]")].find((b) => path === b.dataset.field || path.startsWith(`${b.dataset.field}.`))
      || [...form.querySelectorAll("[data-field]")].find((b) => b.dataset.field.startsWith(`${path}.`));
    if (!box) { unplaced.push(`${field}: ${message}`); continue; }
    box.classList.add("invalid");
    box.querySelector("[data-name]").setAttribute("aria-invalid", "true");
    const p = box.querySelector(".error");
    p.textContent = p.textContent ? `${p.textContent}; ${message}` : message;
  }
  const first = form.querySelector(".invalid [data-name]");
  if (first) first.focus();
  return unplaced;
}

export function clearErrors(form) {
  for (const box of form.querySelectorAll(".invalid")) box.classList.remove("invalid");
  for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  for (const p of form.querySelectorAll(".error")) p.textContent = "";
}
