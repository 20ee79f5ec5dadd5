/* New task form: choices loaded from the API (templates, nodes and their inventory, images and their
   editions, packages, groups, machines); a template prefills the fields; the API validates, and its
   errors are shown beside the fields without touching anything the user typed. */
"use strict";
(() => {
  const O = window.Octo;
  if (O.blocked) return;
  const h = O.h;
  const form = document.getElementById("task-form");
  const el = (name) => form.elements[name];
  const disks = O.disks(document.getElementById("t-disks"));
  const packageList = document.querySelector("#t-packages ol");
  const packageChoice = document.getElementById("t-package-choice");
  const groupList = document.getElementById("t-group-list");
  const data = { templates: [], nodes: [], images: [], packages: [], groups: [], machines: [] };

  disks.set([{ sizeGb: 100, purpose: "os", type: "dynamic" }]);
  O.watchWhen(form);

  const option = (value, text) => h("option", { value: String(value), text });
  const hintFor = (control) => {
    const box = control.closest(".field");
    let hint = box.querySelector(".hint.dynamic");
    if (!hint) {
      hint = h("p", { class: "hint dynamic", id: O.uid("hint") });
      box.append(hint);
      control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), hint.id].filter(Boolean).join(" "));
    }
    return hint;
  };
  const setHint = (control, ...content) => hintFor(control).replaceChildren(...content);
  const targetType = () => (form.querySelector("input[name=targetType]:checked") || {}).value;

  // -- hypervisor nodes, filtered by target type; their networks and storage ----------------------
  const fillNodes = (force) => {
    const select = el("hypervisorNodeId");
    const kind = targetType();
    const keep = select.value;
    const nodes = data.nodes.filter((n) => (O.NODE_KINDS[kind] || []).includes(n.kind));
    select.replaceChildren(option("", nodes.length ? "Choose a node" : "No node of this kind"),
      ...nodes.map((n) => option(n.id, `${n.name} (${n.endpoint || n.kind})`)));
    select.value = nodes.some((n) => String(n.id) === keep) ? keep : nodes.length === 1 ? String(nodes[0].id) : "";
    if (kind === "baremetal") setHint(select);
    else if (!nodes.length) {
      setHint(select, `No ${O.TARGETS[kind]} node is registered: `, h("a", { href: "/ui/hypervisors", text: "register one" }), ".");
    } else setHint(select);
    if (force === true || select.value !== keep) loadInventory();
  };

  let networkControl = el("vm.network.vswitch");
  const swapNetworkControl = (useSelect, names) => {
    const current = networkControl;
    const value = current.value;
    const next = useSelect ? h("select", {}) : h("input", { type: "text", spellcheck: "false" });
    next.id = current.id;
    next.name = current.name;
    if (current.getAttribute("aria-describedby")) next.setAttribute("aria-describedby", current.getAttribute("aria-describedby"));
    if (useSelect) {
      next.append(option("", "Host default"), ...names.map((n) => option(n.name, `${n.name} (${n.type}${n.active ? "" : ", inactive"})`)));
      next.value = names.some((n) => n.name === value) ? value : "";
    } else next.value = value;
    current.replaceWith(next);
    networkControl = next;
    O.applyWhen(form);
  };
  let inventoryRequest = 0;
  const loadInventory = async () => {
    const nodeId = el("hypervisorNodeId").value;
    const mine = ++inventoryRequest;
    const storage = document.getElementById("t-storage");
    if (!nodeId) {
      swapNetworkControl(true, []);
      storage.replaceChildren();
      setHint(networkControl);
      return;
    }
    setHint(networkControl, "Reading the host's networks…");
    try {
      const [networks, pools] = await Promise.all([O.get(`/hypervisors/${nodeId}/networks`), O.get(`/hypervisors/${nodeId}/storage`)]);
      if (mine !== inventoryRequest) return;
      swapNetworkControl(true, networks);
      storage.replaceChildren(...pools.filter((p) => p.path).map((p) => h("option", {
        value: p.path, label: `${p.name}${p.freeBytes !== null && p.freeBytes !== undefined ? ", " + O.bytes(p.freeBytes) + " free" : ""}` })));
      setHint(networkControl, `${networks.length} network(s) on this host.`);
    } catch (exc) {
      if (mine !== inventoryRequest) return;
      swapNetworkControl(false, []);
      setHint(networkControl, `Could not read the host's networks (${exc.message}); type a name.`);
    }
  };

  // -- images and their editions ------------------------------------------------------------------
  const fillEditions = () => {
    const select = el("os.imageIndex");
    const image = data.images.find((i) => String(i.id) === el("os.imageId").value);
    const keep = select.value;
    const editions = (image && image.editions) || [];
    select.replaceChildren(option("", image ? `The image's default (index ${image.imageIndex})` : "Choose an image first"),
      ...editions.map((e) => option(e.index, `${e.index}: ${e.displayName || e.name}`)));
    select.value = editions.some((e) => String(e.index) === keep) ? keep : "";
    setHint(select, image && image.osType === "windows" && !image.editions
      ? "Not scanned: scan the image on the Images page to choose an edition." : "");
  };

  // -- post-install: groups and packages ----------------------------------------------------------
  const fillGroups = () => {
    groupList.replaceChildren(...(data.groups.length ? data.groups.map((g) => {
      const id = O.uid("group");
      return h("label", { for: id }, h("input", { type: "checkbox", id, name: "postInstall.addToGroups",
        value: String(g.id), "data-type": "int-list" }), g.name);
    }) : [h("p", { class: "muted" }, "No groups yet: ", h("a", { href: "/ui/groups", text: "create one" }), ".")]));
  };
  const renumberPackages = () => {
    [...packageList.children].forEach((item, i) => {
      item.dataset.path = `postInstall.runPackages[${i}]`;
      item.querySelector("input[type=hidden]").name = `postInstall.runPackages[${i}].packageId`;
      for (const control of item.querySelectorAll("[data-param]")) {
        control.name = `postInstall.runPackages[${i}].parameters.${control.dataset.param}`;
      }
    });
  };
  const parameterField = (name, schema, required, value) => {
    const id = O.uid("param");
    const label = h("label", { for: id, text: `${name}${required ? "" : " (optional)"}` });
    const hint = schema.description ? h("p", { class: "hint", id: id + "-hint", text: schema.description }) : null;
    const common = { id, "data-param": name, "aria-describedby": hint ? id + "-hint" : null };
    let control;
    if (schema.enum) {
      const type = schema.type === "integer" ? "int" : schema.type === "boolean" ? "bool" : null;
      control = h("select", { ...common, "data-type": type },
        required ? null : option("", "Not set"), schema.enum.map((v) => option(v, String(v))));
    } else if (schema.type === "boolean") {
      control = h("input", { ...common, type: "checkbox", "data-type": "bool" });
      control.checked = value === true;
      return h("div", { class: "field check" }, control, label, hint);
    } else {
      control = h("input", { ...common, type: schema.type === "integer" ? "number" : "text",
        "data-type": schema.type === "integer" ? "int" : null, spellcheck: "false" });
    }
    if (value !== undefined && value !== null) control.value = String(value);
    return h("div", { class: "field" }, label, control, hint);
  };
  const addPackage = (packageId, parameters) => {
    const pkg = data.packages.find((p) => p.id === Number(packageId));
    if (!pkg) return;
    const schema = pkg.parametersSchema || {};
    const required = schema.required || [];
    const values = parameters || {};
    const remove = h("button", { type: "button", class: "quiet", text: "Remove", "aria-label": `Remove package ${pkg.name}` });
    const item = h("li", {},
      h("div", { class: "package-head" }, h("span", { text: `${pkg.name} (${pkg.osType})` }), remove),
      h("input", { type: "hidden", value: String(pkg.id), "data-type": "int" }),
      h("div", { class: "row" }, Object.entries(schema.properties || {}).map(([name, s]) =>
        parameterField(name, s, required.includes(name), name in values ? values[name] : s.default))));
    remove.addEventListener("click", () => {
      item.remove();
      renumberPackages();
      packageChoice.focus();
    });
    packageList.append(item);
    renumberPackages();
  };
  document.getElementById("t-add-package").addEventListener("click", () => {
    if (!packageChoice.value) {
      packageChoice.focus();
      return;
    }
    addPackage(packageChoice.value);
    packageChoice.value = "";
  });

  // -- a template prefills the form -----------------------------------------------------------------
  const applyTemplate = async () => {
    const id = el("templateId").value;
    if (!id) return;
    let t;
    try {
      t = await O.get(`/templates/${id}`);
    } catch (exc) {
      O.say(`Could not load the template: ${exc.message}`, true);
      return;
    }
    const entries = t.postInstallPackages || [];
    O.fill(form, {
      vm: { cpu: t.defaultCpu, memoryGb: t.defaultMemoryGb },
      os: { language: t.language, timezone: t.timezone, ...(t.imageId ? { imageId: t.imageId } : {}) },
      domain: { join: t.domainJoin, name: t.domainName, ou: t.domainOu, method: t.domainJoinMethod },
      postInstall: { addToGroups: entries.filter((e) => e.groupId).map((e) => e.groupId) },
    });
    if (t.defaultDisks && t.defaultDisks.length) disks.set(t.defaultDisks);
    const packages = entries.filter((e) => e.packageId);
    if (packages.length) {
      packageList.replaceChildren();
      packages.forEach((e) => addPackage(e.packageId));
    }
    fillEditions();
    O.formStatus(form, `Filled in from template ${t.name}; change anything you need.`);
  };

  // -- sending -------------------------------------------------------------------------------------
  const send = async (dryRun) => {
    O.clearErrors(form);
    const buttons = form.querySelectorAll(".actions button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const body = O.serialize(form);
      const result = await O.api("POST", dryRun ? "/tasks?dryRun=true" : "/tasks", body);
      if (dryRun) {
        O.formStatus(form, `Valid: the task would run ${result.task.steps.length} steps and produce `
          + `${Object.keys(result.artifacts || {}).length} file(s). Nothing was created.`);
      } else {
        location.assign(`/ui/tasks/${result.id}`);
      }
    } catch (exc) {
      if (exc.status !== 401) O.showErrors(form, exc);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  form.addEventListener("keydown", (event) => {  // Enter in a field does not create a task; the button does
    if (event.key === "Enter" && event.target.tagName === "INPUT" && !["submit", "button", "checkbox", "radio"].includes(event.target.type)) {
      event.preventDefault();
    }
  });
  document.getElementById("t-check").addEventListener("click", () => send(true));

  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "targetType") fillNodes();
    else if (name === "hypervisorNodeId") loadInventory();
    else if (name === "os.imageId") fillEditions();
    else if (name === "templateId") applyTemplate();
  });

  // -- load the choices ----------------------------------------------------------------------------
  const load = async () => {
    const optional = (path) => O.all(path).catch(() => []);
    try {
      [data.templates, data.nodes, data.images, data.packages, data.groups, data.machines] = await Promise.all([
        O.all("/templates"), O.all("/hypervisors"), O.all("/images"), optional("/packages"), optional("/groups"),
        optional("/machines")]);
    } catch (exc) {
      if (exc.status !== 401) O.say(`Could not load the choices: ${exc.message}`, true);
      return;
    }
    el("templateId").append(...data.templates.map((t) => option(t.id, t.name)));
    el("os.imageId").append(...data.images.map((i) => option(i.id, `${i.name} (${i.osType}${i.osVersion ? " " + i.osVersion : ""})`)));
    if (data.images.length === 1) el("os.imageId").value = String(data.images[0].id);
    if (!data.images.length) setHint(el("os.imageId"), "No image is registered: ", h("a", { href: "/ui/images", text: "register one" }), ".");
    packageChoice.append(...data.packages.map((p) => option(p.id, `${p.name} (${p.osType})`)));
    document.getElementById("t-macs").append(...data.machines.flatMap((m) =>
      (m.macAddresses || []).map((mac) => h("option", { value: mac, label: m.name }))));
    fillGroups();
    // start on a target type that has nodes, the spec's Hyper-V when it does
    const served = (target) => data.nodes.some((n) => (O.NODE_KINDS[target] || []).includes(n.kind));
    if (!served(targetType())) {
      const kind = Object.keys(O.NODE_KINDS).find(served);
      if (kind) form.querySelector(`input[name=targetType][value=${kind}]`).checked = true;
    }
    O.applyWhen(form);
    fillNodes(true);
    fillEditions();
    form.setAttribute("data-ready", "true");
  };
  load();
})();
