/* Octoprov web UI, shared by every page: the API client (a bearer token from sessionStorage, or the
   sign-in's HttpOnly session cookie with its CSRF token echoed on every change), DOM
   helpers that never parse data as HTML, forms whose control names are API field paths, and the
   placing of the API's 400 errors beside those controls. */
"use strict";
(() => {
  const TOKEN_KEY = "octoprov.token";
  const CSRF_KEY = "octoprov.csrf";  // the sign-in's CSRF token; the session itself is a cookie no script reads
  const API = "/api/v1/provisioning";
  const O = {};
  window.Octo = O;

  // -- authentication ----------------------------------------------------------------------------
  O.token = () => sessionStorage.getItem(TOKEN_KEY);
  O.keepToken = (token) => sessionStorage.setItem(TOKEN_KEY, token);
  O.keepSignIn = (csrf) => sessionStorage.setItem(CSRF_KEY, csrf);
  /* Who the requests speak for: the token's header, or the CSRF header beside the session cookie. */
  O.authHeaders = (token) => {
    const bearer = token || O.token();
    if (bearer) return { Authorization: "Bearer " + bearer };
    const csrf = sessionStorage.getItem(CSRF_KEY);
    return csrf ? { "X-CSRF-Token": csrf } : {};
  };
  O.toSignIn = () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(CSRF_KEY);
    const next = location.pathname + location.search;
    location.replace("/ui/signin?next=" + encodeURIComponent(next));
  };
  O.page = document.body.dataset.page;
  O.blocked = O.page !== "signin" && !O.token() && !sessionStorage.getItem(CSRF_KEY);
  if (O.blocked) O.toSignIn();

  // -- the API -----------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || (status ? `The server answered ${status}` : "The server could not be reached"));
      this.status = status;
      this.errors = (body && body.errors) || {};
    }
  }
  O.ApiError = ApiError;

  /* method, path below /api/v1/provisioning (or a whole /api/ path); `body` is sent as JSON, `raw` as it is. */
  O.api = async (method, path, body, { raw, token, headers } = {}) => {
    const init = { method, credentials: "same-origin",
      headers: { Accept: "application/json", ...O.authHeaders(token), ...(headers || {}) } };
    if (raw !== undefined) init.body = raw;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path.startsWith("/api/") ? path : API + path, init);
    } catch (_) {
      throw new ApiError(0, null);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { message: text.slice(0, 300) }; }
    }
    if (response.status === 401 && !token) {
      O.toSignIn();
      throw new ApiError(401, data);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  };
  O.get = (path) => O.api("GET", path);
  /* Every item of a list resource (one page of the largest size the API gives). */
  O.all = async (path) => (await O.get(path + (path.includes("?") ? "&" : "?") + "perPage=500")).items;

  // -- live updates ------------------------------------------------------------------------------
  /* Switches kept in sessionStorage (a test sets them; so can anyone in the browser's console):
     "octoprov.live" = "off" keeps the pages from streaming, "octoprov.polling" = "off" from polling. */
  O.enabled = (name) => sessionStorage.getItem("octoprov." + name) !== "off";

  const parseEvent = (block) => {
    const event = { id: null, event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "id") event.id = value;
      else if (name === "event") event.event = value;
      else if (name === "data") event.data.push(value);
    }
    return event.data.length ? { ...event, data: JSON.parse(event.data.join("\n")) } : null;
  };

  /* Follow a server-sent event stream below /api/v1/provisioning. fetch(), not EventSource: the token goes
     in the Authorization header (never in the URL, which access logs keep). A stream the server ends is
     opened again at once with Last-Event-ID, so nothing is lost or repeated. onEvent(kind, data) for each
     event; onFail() when no stream can be had (the server refuses, or three attempts in a row find no
     server): the page polls then. Returns { stop }. */
  O.follow = (path, { onEvent, onFail }) => {
    let lastId = null;
    let stopped = false;
    let misses = 0;
    let controller = null;
    const give = () => {
      stopped = true;
      if (onFail) onFail();
    };
    const run = async () => {
      while (!stopped) {
        controller = new AbortController();
        const headers = { Accept: "text/event-stream", ...O.authHeaders() };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        let response;
        try {
          response = await fetch(API + path, { headers, signal: controller.signal, cache: "no-store" });
        } catch (_) {
          if (stopped) return;
          if (++misses >= 3) return give();
          await new Promise((resolve) => setTimeout(resolve, 2000 * misses));
          continue;
        }
        if (response.status === 401) return O.toSignIn();
        if (!response.ok || !response.body) return give();
        misses = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const event = parseEvent(buffer.slice(0, end));
              buffer = buffer.slice(end + 2);
              if (!event) continue;
              onEvent(event.event, event.data);
              if (event.id !== null) lastId = event.id;  // after the page took it: a reconnection repeats nothing
            }
          }
        } catch (_) {
          if (stopped) return;
          await new Promise((resolve) => setTimeout(resolve, 1000));  // the connection broke: resume shortly
        }
      }
    };
    run();
    return { stop: () => { stopped = true; if (controller) controller.abort(); } };
  };

  // -- DOM ----------------------------------------------------------------------------------------
  /* h("a", {href, class, text, onclick}, ...children): text always goes in as text, never as HTML. */
  O.h = (tag, attrs, ...children) => {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
    }
    return el;
  };
  let uid = 0;
  O.uid = (prefix) => `${prefix || "x"}-${++uid}`;

  const toast = () => document.getElementById("toast");
  O.say = (message, bad) => {
    const box = toast();
    if (!box) return;
    const line = O.h("p", { class: bad ? "bad" : "", text: message });
    box.append(line);
    setTimeout(() => line.remove(), bad ? 9000 : 4000);
  };

  // -- formatting ---------------------------------------------------------------------------------
  // the target registry, as the page was served with it: each target's label and the kinds of node it runs on
  const declared = JSON.parse(document.body.dataset.targets || "{}");
  O.TARGETS = Object.fromEntries(Object.entries(declared).map(([name, t]) => [name, t.label]));
  O.NODE_KINDS = Object.fromEntries(Object.entries(declared).map(([name, t]) => [name, t.nodeKinds]));
  O.KIND_LABELS = Object.fromEntries(Object.values(declared).flatMap((t) => t.nodeKinds.map((k) => [k, t.label])));
  /* Status icons (the spec's ✅ 🔄 ⏳ ❌) are drawn by the stylesheet, so they look the same with or
     without an emoji font; the words beside them are what assistive technology reads. */
  const ICON_OF = { pending: "pending", creating_vm: "running", booting: "running", installing: "running",
    configuring: "running", completed: "done", failed: "failed", cancelled: "cancelled", running: "running", done: "done" };
  O.icon = (status) => O.h("span", { class: `icon i-${ICON_OF[status] || "pending"}`, "aria-hidden": "true" });
  O.FINAL = new Set(["completed", "failed", "cancelled"]);
  O.ACTIVE = ["pending", "creating_vm", "booting", "installing", "configuring"];
  O.statusText = (status) => status === "creating_vm" ? "Creating VM"
    : status.charAt(0).toUpperCase() + status.slice(1).replace(/_/g, " ");
  O.when = (iso) => iso ? new Date(iso).toLocaleString() : "";
  O.clock = (iso) => iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
  O.duration = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  };
  O.bytes = (n) => {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  };
  O.progress = (percent, status) => O.h("progress", {
    max: 100, value: percent || 0, "aria-label": `Progress ${percent || 0}%`,
    class: status === "completed" ? "done" : (status === "failed" || status === "cancelled") ? "bad" : "" });

  // -- field paths: "vm.disks[1].sizeGb" <-> ["vm", "disks", 1, "sizeGb"] ------------------------
  O.parsePath = (path) => [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => m[2] !== undefined ? Number(m[2]) : m[1]);
  O.formatPath = (parts) => parts.reduce((acc, p) => typeof p === "number" ? `${acc}[${p}]` : (acc ? `${acc}.${p}` : p), "");
  O.getPath = (obj, path) => O.parsePath(path).reduce((node, p) => (node === null || node === undefined) ? undefined : node[p], obj);
  O.setPath = (obj, path, value) => {
    const parts = O.parsePath(path);
    let node = obj;
    parts.forEach((part, i) => {
      if (i === parts.length - 1) { node[part] = value; return; }
      if (node[part] === null || node[part] === undefined) node[part] = typeof parts[i + 1] === "number" ? [] : {};
      node = node[part];
    });
  };

  // -- forms --------------------------------------------------------------------------------------
  const fileTexts = new WeakMap();  // <input type=file data-type=text-file> -> the text read from it
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (input.type === "file" && input.dataset.type === "text-file") {
      fileTexts.delete(input);
      if (input.files[0]) input.files[0].text().then((text) => fileTexts.set(input, text));
    }
  });

  document.addEventListener("reset", (event) => {
    for (const input of event.target.querySelectorAll("input[type=file]")) fileTexts.delete(input);
  });

  const convert = (value, type) => {
    if (type === "int") return /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;  // else the API names the field
    if (type === "float") return value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
    if (type === "bool") return value === "true";
    return value;
  };

  /* The form as a request body: each enabled control's value at its name's path; empty fields are
     left out so that the API's (or the template's) defaults apply. */
  O.serialize = (form) => {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.matches(":disabled") || el.type === "submit" || el.type === "button" || "skip" in el.dataset) continue;
      const type = el.dataset.type || "";
      if (el.type === "checkbox" && type.endsWith("list")) {
        let list = O.getPath(out, el.name);
        if (!Array.isArray(list)) { list = []; O.setPath(out, el.name, list); }
        if (el.checked) list.push(convert(el.value, type === "int-list" ? "int" : ""));
      } else if (el.type === "checkbox") {
        O.setPath(out, el.name, el.checked);
      } else if (el.type === "radio") {
        if (el.checked) O.setPath(out, el.name, convert(el.value, type));
      } else if (el.type === "file") {
        if (fileTexts.has(el)) O.setPath(out, el.name, fileTexts.get(el));
      } else if (el.value.trim() !== "") {
        if (type === "list") O.setPath(out, el.name, el.value.split(/[\s,;]+/).filter(Boolean));
        else if (type === "json") {
          let value = el.value;
          try { value = JSON.parse(el.value); } catch (_) { /* sent as text: the API names the field */ }
          O.setPath(out, el.name, value);
        } else O.setPath(out, el.name, convert(el.value, type));
      }
    }
    return out;
  };

  /* Put an API object's values into the controls named by their paths (passwords stay empty). */
  O.fill = (form, data) => {
    for (const el of form.elements) {
      if (!el.name || el.type === "file" || el.type === "password" || "skip" in el.dataset) continue;
      const value = O.getPath(data, el.name);
      if (value === undefined) continue;
      const type = el.dataset.type || "";
      if (el.type === "checkbox" && type.endsWith("list")) el.checked = Array.isArray(value) && value.map(String).includes(el.value);
      else if (el.type === "checkbox") el.checked = Boolean(value);
      else if (el.type === "radio") el.checked = String(value) === el.value;
      else if (type === "json") el.value = value === null ? "" : JSON.stringify(value, null, 2);
      else if (type === "list") el.value = (value || []).join(", ");
      else el.value = value === null ? "" : String(value);
    }
    O.applyWhen(form);
  };

  /* data-when="name=a,b" (or "name" for a checkbox): shown and enabled only while that control says so. */
  const conditionHolds = (root, rule) => {
    const [name, values] = rule.split("=");
    const controls = [...root.querySelectorAll(`[name="${CSS.escape(name)}"]`)];
    if (!controls.length) return true;
    if (values === undefined) return controls.some((c) => c.checked);
    const current = controls[0].type === "radio" ? (controls.find((c) => c.checked) || {}).value : controls[0].value;
    return values.split(",").includes(current);
  };
  O.applyWhen = (root) => {
    for (const box of root.querySelectorAll("[data-when]")) {  // document order: outer boxes first
      const outerOff = box.parentElement.closest("[data-when][hidden]");
      const on = !outerOff && conditionHolds(root, box.dataset.when);
      box.hidden = !on;
      for (const control of box.querySelectorAll("input, select, textarea, button")) control.disabled = !on;
    }
  };
  O.watchWhen = (form) => {
    form.addEventListener("change", () => O.applyWhen(form));
    O.applyWhen(form);
  };

  // -- errors beside their fields ---------------------------------------------------------------
  const describe = (control, id) => {
    const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    control.setAttribute("aria-describedby", [...ids, id].join(" "));
  };
  const undescribe = (control) => {
    const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.startsWith("err-"));
    if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
    else control.removeAttribute("aria-describedby");
  };
  /* The control (or the box, for a whole table or section) an error path belongs to: the longest
     prefix of the path that names one. */
  const findTarget = (form, path) => {
    const parts = O.parsePath(path);
    for (let n = parts.length; n > 0; n--) {
      const prefix = O.formatPath(parts.slice(0, n));
      const control = [...form.querySelectorAll(`[name="${CSS.escape(prefix)}"]`)].find((c) => c.type !== "hidden");
      if (control) return { control, box: control.closest(".field, [data-path]") || control.parentElement, exact: n === parts.length };
      const box = form.querySelector(`[data-path="${CSS.escape(prefix)}"]`);
      if (box) return { control: null, box, exact: n === parts.length };
    }
    return null;
  };
  const labelOf = (target) => {
    if (target.control && target.control.getAttribute("aria-label")) return target.control.getAttribute("aria-label");
    if (target.control && target.control.labels && target.control.labels.length) return target.control.labels[0].textContent.trim();
    const legend = target.box.querySelector("legend, .label");
    return legend ? legend.textContent.trim() : "";
  };
  O.clearErrors = (form) => {
    form.querySelectorAll(".field-error.api").forEach((e) => e.remove());
    form.querySelectorAll("[aria-invalid]").forEach((c) => { c.removeAttribute("aria-invalid"); undescribe(c); });
    const summary = form.querySelector(".error-summary");
    if (summary) summary.hidden = true;
    const status = form.querySelector(".form-status");
    if (status) { status.textContent = ""; status.className = "form-status"; }
  };
  /* Show an ApiError: each field error beside its field, all of them in the summary at the top. */
  O.showErrors = (form, error) => {
    O.clearErrors(form);
    let errors = { ...(error.errors || {}) };
    const named = /^([A-Za-z][\w.[\]]*): (.+)$/.exec(error.message || "");  // a 409 such as "name: ... exists already"
    if (!Object.keys(errors).length && named && findTarget(form, named[1])) errors = { [named[1]]: named[2] };
    const summary = form.querySelector(".error-summary");
    const list = summary && summary.querySelector("ul");
    if (list) list.replaceChildren();
    let first = null;
    for (const [path, message] of Object.entries(errors)) {
      const target = findTarget(form, path);
      let anchor = null;
      if (target) {
        const id = O.uid("err");
        const shared = target.control && target.box.querySelectorAll("[name]").length > 1 && target.control.type !== "radio";
        const text = !target.exact ? `${path}: ${message}` : shared ? `${labelOf(target)}: ${message}` : message;
        const line = O.h("p", { class: "field-error api", id, text });
        const legend = target.box.querySelector(":scope > legend");
        if (!target.control && legend) legend.after(line); else target.box.append(line);
        if (target.control) {
          target.control.setAttribute("aria-invalid", "true");
          describe(target.control, id);
          if (!target.control.id) target.control.id = O.uid("control");
          anchor = target.control.id;
        } else {
          if (!target.box.id) target.box.id = O.uid("box");
          anchor = target.box.id;
        }
        first = first || target.control || target.box;
      }
      if (list) {
        const label = target ? labelOf(target) : "";
        const words = `${label ? label + " (" + path + ")" : path}: ${message}`;
        list.append(O.h("li", {}, anchor ? O.h("a", { href: "#" + anchor, text: words, onclick: (event) => {
          event.preventDefault();
          const el = document.getElementById(anchor);
          el.scrollIntoView({ block: "center" });
          if (el.focus) el.focus();
        } }) : words));
      }
    }
    if (summary) {
      summary.querySelector(".error-message").textContent = Object.keys(errors).length
        ? "The API did not accept the form. Nothing you entered was lost; correct the fields below." : error.message;
      summary.hidden = false;
      summary.focus();
    }
    O.formStatus(form, Object.keys(errors).length ? `${Object.keys(errors).length} field(s) need attention (listed at the top).`
      : error.message, true);
    return first;
  };
  O.formStatus = (form, message, bad) => {
    const status = form.querySelector(".form-status");
    if (!status) return;
    status.textContent = message;
    status.className = "form-status " + (bad ? "bad" : "ok");
  };

  // -- the disks table (task form, template form) -------------------------------------------------
  /* Rows are named <prefix>[i].<part> and renumbered after every change, so error paths such as
     vm.disks[1].sizeGb find their input. */
  O.disks = (box) => {
    const prefix = box.dataset.disks;
    const body = box.querySelector("tbody");
    const template = box.querySelector("template");
    const renumber = () => {
      [...body.rows].forEach((row, i) => {
        for (const control of row.querySelectorAll("[data-part]")) {
          control.name = `${prefix}[${i}].${control.dataset.part}`;
          control.id = `${box.id}-${i}-${control.dataset.part}`;
          const what = { sizeGb: "size in GB", purpose: "purpose", type: "type" }[control.dataset.part];
          control.setAttribute("aria-label", `Disk ${i + 1} ${what}`);
        }
        row.querySelector("[data-remove-disk]").setAttribute("aria-label", `Remove disk ${i + 1}`);
      });
    };
    const add = (disk, focus) => {
      const row = template.content.firstElementChild.cloneNode(true);
      const values = { sizeGb: 100, purpose: body.rows.length ? "data" : "os", type: "dynamic", ...(disk || {}) };
      for (const control of row.querySelectorAll("[data-part]")) control.value = values[control.dataset.part];
      body.append(row);
      renumber();
      if (focus) row.querySelector("input").focus();
    };
    box.querySelector("[data-add-disk]").addEventListener("click", () => add(null, true));
    body.addEventListener("click", (event) => {
      const button = event.target.closest("[data-remove-disk]");
      if (!button) return;
      const row = button.closest("tr");
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (next ? next.querySelector("[data-remove-disk]") : box.querySelector("[data-add-disk]")).focus();
    });
    return {
      set(disks) { body.replaceChildren(); (disks || []).forEach((d) => add(d)); },
      add,
      count: () => body.rows.length,
    };
  };

  /* A confirm() that says what will happen. */
  O.confirm = (message) => window.confirm(message);

  // -- every page ---------------------------------------------------------------------------------
  /* What the caller's role does not allow is not offered: elements marked data-needs-role="operator|admin" are
     hidden by ui.css once <body data-role> says the role (rows drawn later included). The API decides anyway. */
  if (!O.blocked && O.page !== "signin") {
    O.api("GET", "/api/v1/caller").then((caller) => { document.body.dataset.role = caller.role; }).catch(() => {});
  }

  const signout = document.getElementById("signout");
  if (signout) signout.addEventListener("click", async () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(CSRF_KEY);
    try { await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" }); } catch (_) { /* gone */ }
    location.assign("/ui/signin");
  });
})();
