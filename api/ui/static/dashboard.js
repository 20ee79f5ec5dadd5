/* Dashboard: active tasks (every unfinished state), recent tasks with filters and pages, library counts.
   Follows the task event stream: a changed task's row is redrawn from the event, anything else (a new
   task, one that moved between the lists) reloads the lists. Without a stream it refreshes itself: every
   2 s while something runs, every 10 s otherwise. */
"use strict";
(() => {
  const O = window.Octo;
  if (O.blocked) return;
  const h = O.h;
  const form = document.getElementById("filters");
  const activeBox = document.getElementById("active");
  const recentBox = document.getElementById("recent");
  const PER_PAGE = 20;
  let page = 1;
  let timer = null;
  let live = null;  // the event stream, while it works
  const shown = new Map([[activeBox, []], [recentBox, []]]);  // the tasks each list shows

  const params = new URLSearchParams(location.search);
  for (const name of ["status", "targetType", "hostname"]) if (params.get(name)) form.elements[name].value = params.get(name);
  page = Math.max(1, Number(params.get("page")) || 1);

  const filters = () => {
    const q = new URLSearchParams();
    for (const name of ["status", "targetType", "hostname"]) if (form.elements[name].value) q.set(name, form.elements[name].value);
    return q;
  };

  const row = (task) => {
    const final = O.FINAL.has(task.status);
    const what = task.status === "failed" ? `Failed: ${task.errorMessage || task.currentStep || ""}`
      : task.currentStep && !final ? task.currentStep : O.statusText(task.status);
    return h("div", { class: "task-row", role: "listitem" },
      O.icon(task.status),
      h("span", { class: "host" }, h("a", { href: `/ui/tasks/${task.id}`, text: task.hostname }),
        h("span", { class: "vh", text: `, ${O.statusText(task.status)}` })),
      h("span", { class: "target", text: O.TARGETS[task.targetType] || task.targetType }),
      h("span", { class: "step" + (task.status === "failed" ? " bad" : ""), text: what }),
      h("span", { class: "bar" }, O.progress(task.progressPercent, task.status),
        h("span", { text: task.status === "failed" || task.status === "cancelled" ? "–" : `${task.progressPercent}%` })),
      h("span", { class: "when-cell", text: O.when(task.createdAt) }));
  };
  const list = (box, tasks, empty) => {
    shown.set(box, tasks);
    box.dataset.empty = empty;
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(tasks.length ? h("div", { role: "list" }, tasks.map(row)) : h("p", { class: "muted", text: empty }));
  };

  const loadActive = async () => {
    const q = filters();
    q.delete("status");
    q.set("perPage", "100");
    const pages = await Promise.all(O.ACTIVE.map((status) => O.get(`/tasks?${q}&status=${status}`)));
    const tasks = pages.flatMap((p) => p.items).sort((a, b) => b.id - a.id);
    return () => {
      list(activeBox, tasks, "Nothing is running.");
      return tasks.length;
    };
  };
  const loadRecent = async () => {
    const q = filters();
    q.set("page", String(page));
    q.set("perPage", String(PER_PAGE));
    const result = await O.get(`/tasks?${q}`);
    const shownPage = page;
    return () => {
      list(recentBox, result.items, result.total ? "No tasks on this page." : "No tasks match.");
      const pages = Math.max(1, Math.ceil(result.total / PER_PAGE));
      document.getElementById("page-info").textContent = `Page ${shownPage} of ${pages} · ${result.total} task(s)`;
      document.getElementById("prev").disabled = shownPage <= 1;
      document.getElementById("next").disabled = shownPage >= pages;
      return result.items.filter((t) => !O.FINAL.has(t.status)).length;
    };
  };
  const loadCounts = async () => {
    await Promise.all([...document.querySelectorAll("[data-count]")].map(async (link) => {
      try {
        const result = await O.get(`/${link.dataset.count}?perPage=1`);
        link.querySelector(".count").textContent = String(result.total);
      } catch (_) {
        link.querySelector(".count").textContent = "?";
      }
    }));
  };

  /* Each refresh draws only if no newer one started meanwhile: answers to a filter the user already
     changed may arrive after those of the new one, and must not overwrite them. */
  let generation = 0;
  const refresh = async () => {
    clearTimeout(timer);
    const mine = ++generation;
    let running = 0;
    try {
      const draws = await Promise.all([loadActive(), loadRecent()]);
      if (mine !== generation) return;  // the newer refresh draws, and schedules the next one
      running = draws.reduce((sum, draw) => sum + draw(), 0);
    } catch (exc) {
      if (mine !== generation) return;
      if (exc.status !== 401) O.say(`Could not load the tasks: ${exc.message}`, true);
    }
    if (!live && O.enabled("polling")) timer = setTimeout(refresh, document.hidden ? 15000 : running ? 2000 : 10000);
  };

  /* A task changed: redraw its rows if it stays where it is; otherwise the lists are out of date. */
  let reload = null;
  const changedTask = (task) => {
    let placed = false;
    let stale = false;
    const status = form.elements.status.value;
    for (const [box, tasks] of shown) {
      const at = tasks.findIndex((t) => t.id === task.id);
      if (at < 0) continue;
      if ((box === activeBox && O.FINAL.has(task.status)) || (status && status !== task.status)) {
        stale = true;
        continue;
      }
      tasks[at] = task;
      list(box, tasks, box.dataset.empty);
      placed = true;
    }
    if ((stale || !placed) && !reload) reload = setTimeout(() => { reload = null; refresh(); }, 500);
  };
  const follow = () => {
    live = O.follow("/events", {
      onEvent: (kind, data) => {
        if (kind === "ready") refresh();  // the stream sends whatever changes after this point
        else if (kind === "task") changedTask(data);
      },
      onFail: () => {
        live = null;
        refresh();
      },
    });
  };
  const changed = () => {
    page = 1;
    const q = filters();
    history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
    refresh();
  };
  form.addEventListener("change", changed);
  form.addEventListener("submit", (event) => { event.preventDefault(); changed(); });
  let typing = null;
  form.elements.hostname.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(changed, 400); });
  const go = (delta) => {
    page += delta;
    const q = filters();
    if (page > 1) q.set("page", String(page));
    history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
    refresh();
  };
  document.getElementById("prev").addEventListener("click", () => go(-1));
  document.getElementById("next").addEventListener("click", () => go(1));
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !live) refresh(); });

  if (O.enabled("live")) follow();
  else refresh();
  loadCounts();
})();
