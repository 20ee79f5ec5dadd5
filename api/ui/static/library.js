/* Library pages (images, driver packs, templates, hypervisor nodes, packages, groups): one list and
   one form per page, driven by a small description of each resource. */
"use strict";
(() => {
  const O = window.Octo;
  if (O.blocked) return;
  const h = O.h;
  const table = document.getElementById("list");
  const body = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  const headings = [...table.tHead.rows[0].cells].map((cell) => cell.textContent.trim());  // cell labels on narrow screens
  const muted = (text) => h("span", { class: "muted", text });
  const lines = (...parts) => parts.filter(Boolean).flatMap((part, i) => i ? [h("br"), part] : [part]);
  const subTable = (heads, rows) => h("table", { class: "sub" },
    h("thead", {}, h("tr", {}, heads.map((text) => h("th", { scope: "col", text })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((text) => h("td", { text: text === null || text === undefined ? "" : String(text) }))))));

  /* One resource: `path` in the API, `cells(item)` for its row, `form` (id) to create and, with
     `editable`, to edit it; `extra(item)` gives more row buttons ([text, make, plain, role]: the
     role that sees the button, admin unless said); `removable: false` offers no Delete. */
  const library = (spec) => {
    const form = spec.form && document.getElementById(spec.form);
    const heading = form && document.getElementById(spec.form + "-heading");
    const submit = form && form.querySelector("button[type=submit]");
    const cancelEdit = form && form.querySelector("[data-cancel-edit]");
    let items = [];

    const detailRow = (tr, content) => {
      let next = tr.nextElementSibling;
      if (!next || !next.classList.contains("detail")) {
        next = h("tr", { class: "detail" }, h("td", { colspan: columns }));
        tr.after(next);
      }
      next.firstElementChild.replaceChildren(...[content].flat());
      return next;
    };
    const toggle = (button, tr, make) => async () => {
      const open = button.getAttribute("aria-expanded") === "true";
      const next = tr.nextElementSibling;
      if (open && next && next.classList.contains("detail")) {
        next.remove();
        button.setAttribute("aria-expanded", "false");
        return;
      }
      button.setAttribute("aria-expanded", "true");
      detailRow(tr, muted("Loading…"));
      try {
        detailRow(tr, await make());
      } catch (exc) {
        detailRow(tr, h("span", { class: "error-text", text: exc.message }));
      }
    };
    const remove = async (item) => {
      if (!O.confirm(`Delete ${item.name}?`)) return;
      try {
        await O.api("DELETE", `${spec.path}/${item.id}`);
        O.say(`${item.name} deleted.`);
        if (form && form.dataset.editId === String(item.id)) stopEditing();
        await load();
      } catch (exc) {
        if (exc.status !== 401) O.say(`Could not delete ${item.name}: ${exc.message}`, true);
      }
    };
    const row = (item) => {
      const tr = h("tr", { "data-id": item.id });
      const buttons = h("td", { class: "actions-cell" });
      const add = (text, run, role = "admin") => {
        const button = h("button", { type: "button", class: "quiet", text, "aria-label": `${text} ${item.name}`,
          "data-needs-role": role });
        button.addEventListener("click", run(button, tr));
        buttons.append(button);
      };
      for (const [text, make, plain, role] of (spec.extra ? spec.extra(item) : [])) {
        if (plain) add(text, () => () => make(tr), role);
        else add(text, (button, row) => toggle(button, row, () => make(item)), role);
      }
      if (spec.editable) add("Edit", () => () => startEditing(item));
      if (spec.removable !== false) add("Delete", () => () => remove(item));
      tr.append(...spec.cells(item).map((cell, i) => h("td", { "data-label": headings[i] }, cell)), buttons);
      return tr;
    };
    const load = async () => {
      try {
        items = await O.all(spec.path);
        if (spec.loaded) await spec.loaded(items);
      } catch (exc) {
        if (exc.status !== 401) body.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "error-text", text: exc.message })));
        return;
      }
      table.setAttribute("aria-busy", "false");
      body.replaceChildren(...(items.length ? items.map(row)
        : [h("tr", {}, h("td", { colspan: columns, class: "muted", text: "None yet." }))]));
    };

    const startEditing = (item) => {
      O.clearErrors(form);
      form.reset();
      form.dataset.editId = String(item.id);
      O.fill(form, spec.fromItem ? spec.fromItem(item) : item);
      if (spec.filled) spec.filled(item);
      heading.textContent = `${heading.dataset.edit}: ${item.name}`;
      submit.textContent = submit.dataset.edit;
      cancelEdit.hidden = false;
      heading.scrollIntoView({ block: "start" });
      form.querySelector("input:not([type=hidden]), select, textarea").focus();
    };
    const stopEditing = () => {
      delete form.dataset.editId;
      form.reset();
      O.clearErrors(form);
      if (spec.filled) spec.filled(null);
      O.applyWhen(form);
      heading.textContent = heading.dataset.new;
      submit.textContent = submit.dataset.new;
      cancelEdit.hidden = true;
    };
    if (form) {
      O.watchWhen(form);
      cancelEdit.addEventListener("click", stopEditing);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const editing = form.dataset.editId;
        let data = O.serialize(form);
        if (spec.toBody) data = spec.toBody(data, Boolean(editing));
        submit.disabled = true;
        try {
          const saved = await O.api(editing ? "PUT" : "POST", editing ? `${spec.path}/${editing}` : spec.path, data);
          stopEditing();
          O.formStatus(form, `${saved.name} ${editing ? "saved" : "created"}.`);
          O.say(`${saved.name} ${editing ? "saved" : "created"}.`);
          await load();
        } catch (exc) {
          if (exc.status !== 401) O.showErrors(form, exc);
        } finally {
          submit.disabled = false;
        }
      });
    }
    load();
    return { load };
  };

  // -- the pages ----------------------------------------------------------------------------------
  const pages = {};

  pages.images = () => {
    const images = library({
      path: "/images", form: "image-form",
      cells: (i) => [
        lines(h("strong", { text: i.name }), i.cloudImage ? muted("cloud image") : null),
        `${i.osType}${i.osVersion ? " " + i.osVersion : ""} · ${i.architecture}`,
        lines(i.imagePath, i.bootWimPath ? muted(`WinPE: ${i.bootWimPath}`) : null, i.kernelPath ? muted(`kernel: ${i.kernelPath}`) : null),
        O.bytes(i.sizeBytes),
        i.editions ? `${i.editions.length} (default index ${i.imageIndex})` : muted(i.osType === "windows" ? "not scanned" : "–"),
      ],
      extra: (i) => [
        ...(i.osType === "windows" && !i.cloudImage ? [["Scan editions", async (tr) => {
          O.say(`Scanning ${i.name}…`);
          try {
            const scanned = await O.api("POST", `/images/${i.id}/scan`);
            O.say(`${scanned.name}: ${scanned.editions.length} edition(s).`);
            await images.load();
          } catch (exc) {
            if (exc.status !== 401) O.say(`Could not scan ${i.name}: ${exc.message}`, true);
          }
        }, true]] : []),
        ...(i.editions && i.editions.length ? [["Editions", async () => subTable(["Index", "Name", "Edition", "Architecture", "Version", "Size"],
          i.editions.map((e) => [e.index, e.displayName || e.name, e.editionId, e.architecture, e.version, O.bytes(e.sizeBytes)]))]] : []),
      ],
    });
    const upload = document.getElementById("upload-form");
    const file = document.getElementById("u-file");
    file.name = "file";
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      O.clearErrors(upload);
      const chosen = file.files[0];
      if (!chosen) {
        O.showErrors(upload, new O.ApiError(400, { message: "Invalid request", errors: { file: "choose a file to upload" } }));
        return;
      }
      const meta = O.serialize(upload);
      if (!meta.imagePath) meta.imagePath = chosen.name;
      const button = upload.querySelector("button[type=submit]");
      button.disabled = true;
      O.formStatus(upload, `Uploading ${O.bytes(chosen.size)}…`);
      try {
        const saved = await O.api("POST", `/images/upload?${new URLSearchParams(meta)}`, undefined,
          { raw: chosen, headers: { "Content-Type": "application/octet-stream" } });
        upload.reset();
        O.formStatus(upload, `${saved.name} uploaded (${O.bytes(saved.sizeBytes)}).`);
        await images.load();
      } catch (exc) {
        if (exc.status !== 401) O.showErrors(upload, exc);
      } finally {
        button.disabled = false;
      }
    });
  };

  pages.drivers = () => library({
    path: "/drivers", form: "driver-form",
    cells: (d) => [h("strong", { text: d.name }), `${d.vendor || "any vendor"} / ${d.modelPattern || "any model"}`, d.osType,
      d.driverPath, d.infCount === null ? h("span", { class: "error-text", text: "folder missing" }) : String(d.infCount)],
    extra: (d) => d.infFiles && d.infFiles.length ? [[".inf files", async () => h("ul", {}, d.infFiles.map((f) => h("li", { text: f })))]] : [],
  });

  pages.templates = () => {
    const form = document.getElementById("template-form");
    const disks = O.disks(document.getElementById("p-disks"));
    const choices = document.getElementById("p-post-install");
    const names = { images: new Map() };
    const checkboxes = (title, items, name) => [h("h3", { text: title }), ...(items.length ? items.map((item) => {
      const id = O.uid(name);
      return h("label", { for: id }, h("input", { type: "checkbox", id, name, value: String(item.id), "data-type": "int-list" }), item.name);
    }) : [muted("None registered.")])];
    library({
      path: "/templates", form: "template-form", editable: true,
      loaded: async () => {
        if (names.loaded) return;
        names.loaded = true;
        const [images, packages, groups] = await Promise.all([O.all("/images"), O.all("/packages").catch(() => []),
          O.all("/groups").catch(() => [])]);
        images.forEach((i) => names.images.set(i.id, i.name));
        form.elements.imageId.append(...images.map((i) => h("option", { value: String(i.id), text: i.name })));
        choices.replaceChildren(...checkboxes("Packages", packages, "_packages"), ...checkboxes("Groups", groups, "_groups"));
      },
      cells: (t) => [
        lines(h("strong", { text: t.name }), t.description ? muted(t.description) : null),
        `${t.defaultCpu} CPU · ${t.defaultMemoryGb} GB · ${(t.defaultDisks || []).length} disk(s)`,
        t.imageId ? names.images.get(t.imageId) || `#${t.imageId}` : muted("none"),
        `${t.language} · ${t.timezone}`,
        t.domainJoin ? `${t.domainName} (${t.domainJoinMethod})` : muted("no join"),
      ],
      fromItem: (t) => {
        const entries = t.postInstallPackages || [];
        return { ...t, _packages: entries.filter((e) => e.packageId).map((e) => e.packageId),
          _groups: entries.filter((e) => e.groupId).map((e) => e.groupId) };
      },
      filled: (t) => disks.set(t ? t.defaultDisks || [] : []),
      toBody: (data, editing) => {
        const entries = [...(data._packages || []).map((id) => ({ packageId: id })), ...(data._groups || []).map((id) => ({ groupId: id }))];
        delete data._packages;
        delete data._groups;
        if (entries.length) data.postInstallPackages = entries;
        if (editing) {  // the API keeps what an update leaves out: say explicitly what was cleared
          for (const name of ["description", "defaultDisks", "imageId", "domainName", "domainOu", "postInstallPackages"]) {
            if (!(name in data)) data[name] = null;
          }
        }
        return data;
      },
    });
  };

  pages.hypervisors = () => library({
    path: "/hypervisors", form: "node-form", editable: true,
    cells: (n) => [h("strong", { text: n.name }), O.KIND_LABELS[n.kind] || n.kind, n.endpoint || "",
      n.hasCredentials ? "stored (encrypted)" : muted("none")],
    extra: (n) => [["Test connection", async () => {
      const started = performance.now();
      const [networks, storage] = await Promise.all([O.get(`/hypervisors/${n.id}/networks`), O.get(`/hypervisors/${n.id}/storage`)]);
      O.say(`${n.name} answered.`);
      return [
        h("p", { class: "ok-text", text: `Connected in ${Math.round(performance.now() - started)} ms: ${networks.length} network(s), `
          + `${storage.length} storage location(s).` }),
        subTable(["Network", "Type", "Active", "VLANs"], networks.map((x) => [x.name, x.type + (x.bridge ? ` (${x.bridge})` : ""),
          x.active ? "yes" : "no", x.vlanCapable ? "yes" : "no"])),
        subTable(["Storage", "Type", "Path", "Capacity", "Free"], storage.map((x) => [x.name, x.type, x.path, O.bytes(x.capacityBytes),
          O.bytes(x.freeBytes)])),
      ];
    }]],
  });

  const facts = (pairs) => h("dl", { class: "facts" }, pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
    .flatMap(([name, value]) => [h("dt", { text: name }), h("dd", { text: String(value) })]));
  const HARDWARE = [["manufacturer", "Manufacturer"], ["product", "Model"], ["serial", "Serial number"], ["uuid", "System UUID"],
    ["biosVersion", "BIOS version"], ["cpus", "CPUs"], ["cpuModel", "CPU model"], ["memoryBytes", "Memory", O.bytes],
    ["powerState", "Power"], ["secureBoot", "Secure Boot", (on) => on ? "enabled" : "disabled"],
    ["virtualMedia", "Virtual media", (types) => types.join(", ")], ["platform", "Firmware"], ["arch", "Architecture"],
    ["inspectedAt", "Read from the BMC", O.when]];
  const summary = (m) => {
    const hw = m.hardware || {};
    const model = [hw.manufacturer, hw.product].filter(Boolean).join(" ");
    const sizes = [hw.cpus ? `${hw.cpus} CPU` : null, hw.memoryBytes ? O.bytes(hw.memoryBytes) : null,
      hw.disks ? `${hw.disks.length} disk(s)` : null].filter(Boolean).join(" · ");
    const state = m.inspection || {};
    const note = state.state === "queued" || state.state === "running" ? muted(`inspection ${state.state}…`)
      : state.state === "failed" ? h("span", { class: "error-text", text: `inspection failed: ${state.message || ""}` }) : null;
    return lines(model || (sizes ? null : muted("not reported yet")), sizes ? muted(sizes) : null, note,
      m.offeredMacs && m.offeredMacs.length ? muted(`${m.offeredMacs.length} card(s) not registered`) : null);
  };

  pages.machines = () => {
    let machines;
    const addCard = async (m, mac) => {
      try {
        await O.api("PUT", `/machines/${m.id}`, { name: m.name, macAddresses: [...m.macAddresses, mac], username: m.username || undefined,
          secureBoot: m.secureBoot, ...(m.bmc ? { bmc: m.bmc } : {}) });
        O.say(`${mac} added to ${m.name}.`);
        await machines.load();
      } catch (exc) {
        if (exc.status !== 401) O.say(`Could not add ${mac}: ${exc.message}`, true);
      }
    };
    const hardwareDetail = async (m) => {
      const fresh = await O.get(`/machines/${m.id}`);
      const hw = fresh.hardware || {};
      const known = new Set(HARDWARE.map(([key]) => key).concat(["disks", "nics"]));
      const pairs = [...HARDWARE.map(([key, label, show]) => [label, hw[key] === undefined || hw[key] === null ? null : show ? show(hw[key]) : hw[key]]),
        ...Object.keys(hw).filter((key) => !known.has(key) && typeof hw[key] !== "object").sort().map((key) => [key, hw[key]])];
      if (!pairs.some(([, value]) => value !== null && value !== undefined)) {
        return muted("Nothing known yet: inspect the machine through its BMC, or its firmware reports when it first boots from Octoprov.");
      }
      const parts = [facts(pairs)];
      if (hw.disks && hw.disks.length) parts.push(subTable(["Disk", "Size"], hw.disks.map((d) => [d.name, O.bytes(d.sizeBytes)])));
      if (hw.nics && hw.nics.length) {
        const registered = new Set(fresh.macAddresses);
        parts.push(h("table", { class: "sub" },
          h("thead", {}, h("tr", {}, ["Network card", "Link", "Speed", ""].map((text) => h("th", { scope: "col", text })))),
          h("tbody", {}, hw.nics.map((nic) => h("tr", {},
            h("td", { text: nic.mac }), h("td", { text: nic.linkStatus || "" }), h("td", { text: nic.speedMbps ? `${nic.speedMbps} Mb/s` : "" }),
            h("td", {}, registered.has(nic.mac) ? muted("registered") : h("button", { type: "button", class: "quiet", "data-needs-role": "admin",
              text: "Add", "aria-label": `Add ${nic.mac} to ${fresh.name}`, onclick: () => addCard(fresh, nic.mac) })))))));
      }
      return parts;
    };
    const inspect = async (m) => {
      O.say(`Reading ${m.name}'s hardware from its BMC…`);
      try {
        await O.api("POST", `/machines/${m.id}/inspect`);
        await machines.load();
        for (let i = 0; i < 60; i += 1) {  // a BMC answers in seconds, sometimes tens of them
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const state = ((await O.get(`/machines/${m.id}`)).inspection || {}).state;
          if (state === "done" || state === "failed") break;
        }
        await machines.load();
        O.say(`${m.name}: inspection finished.`);
      } catch (exc) {
        if (exc.status !== 401) O.say(`Could not inspect ${m.name}: ${exc.message}`, true);
      }
    };
    machines = library({
      path: "/machines", form: "machine-form", editable: true,
      cells: (m) => [
        h("strong", { text: m.name }),
        lines(...m.macAddresses.map((mac, i) => i ? muted(mac) : mac)),
        m.bmc ? lines(m.bmc.address, muted(`${m.bmc.protocol || "redfish"} · ${m.hasCredentials ? "credentials stored (encrypted)" : "no credentials"}`))
          : muted("none: powered on by hand"),
        lines(m.bootMethod === "virtualMedia" ? "virtual media" : "network (PXE)", m.secureBoot ? muted("Secure Boot enforced") : null),
        summary(m),
      ],
      extra: (m) => [
        ["Hardware", () => hardwareDetail(m), false, "viewer"],
        ...(m.kind === "redfish" ? [["Inspect", () => inspect(m), true]] : []),
      ],
      fromItem: (m) => ({ ...m, bmc: { protocol: "redfish", verifyCertificate: true, ...m.bmc } }),  // IPMI stores no Redfish settings
      toBody: (data) => {
        if (!data.bmc || !data.bmc.address) delete data.bmc;  // no address: no BMC (the protocol and checkbox alone say nothing)
        return data;
      },
    });
  };

  pages.nodes = () => library({
    path: "/nodes", removable: false,
    cells: (n) => [
      lines(h("strong", { text: n.name }), n.hostname && n.hostname !== n.name ? muted(n.hostname) : null),
      lines(n.osName || n.osType, n.osName ? muted(n.osType) : null),
      lines(...n.ipAddresses, ...n.macAddresses.map((mac) => muted(mac))),
      n.taskId ? h("a", { href: `/ui/tasks/${n.taskId}`, text: `task ${n.taskId}` }) : muted("–"),
      O.when(n.updatedAt),
    ],
    extra: (n) => n.sshHostKeys.length ? [["SSH host keys", async () => h("ul", { class: "keys" },
      n.sshHostKeys.map((key) => h("li", { text: key })))
    , false, "viewer"]] : [],
  });

  pages.packages = () => library({
    path: "/packages", form: "package-form", editable: true,
    cells: (p) => {
      const schema = p.parametersSchema || {};
      const required = schema.required || [];
      const names = Object.keys(schema.properties || {}).map((name) => name + (required.includes(name) ? "*" : ""));
      return [lines(h("strong", { text: p.name }), p.description ? muted(p.description) : null), p.osType,
        names.length ? names.join(", ") : muted("none"), `${p.idempotent ? "yes" : "no"} · timeout ${p.timeoutSeconds} s`];
    },
  });

  pages.groups = () => library({
    path: "/groups", form: "group-form", editable: true,
    cells: (g) => [h("strong", { text: g.name }), g.description || muted("–")],
    extra: (g) => [["Members", async () => {
      const members = await O.all(`/groups/${g.id}/members`);
      return members.length ? subTable(["Name", "Host name", "Role", "Added"], members.map((m) => [m.name, m.hostname, m.role, O.when(m.addedAt)]))
        : muted("No members yet.");
    }]],
  });

  if (pages[O.page]) pages[O.page]();
})();
