/* Task detail: follows the task's event stream (its changes and log lines as they happen), so the page
   follows a run to its end without a reload. Without a stream it polls the task (every second while it
   runs) and tails its log with afterId. Cancel and Retry call the API's own operations. */
"use strict";
(() => {
  const O = window.Octo;
  if (O.blocked) return;
  const h = O.h;
  const root = document.getElementById("task");
  const id = root.dataset.taskId;
  const $ = (name) => document.getElementById(name);
  const MAX_LOG_LINES = 2000;
  let task = null;
  let lastLogId = 0;
  let timer = null;
  let finalPolls = 0;  // after a task ends, one more round picks up its last log lines
  let nodeName = null;
  let machineShown = null;
  let configText = "";
  let live = null;  // the event stream, while it works

  const fact = (term, ...value) => [h("dt", { text: term }), h("dd", {}, ...value)];

  const stepDuration = (step) => {
    if (!step.startedAt) return "";
    const end = step.finishedAt ? new Date(step.finishedAt) : new Date();
    return O.duration(end - new Date(step.startedAt));
  };

  const render = (t) => {
    task = t;
    const final = O.FINAL.has(t.status);
    document.title = `${t.hostname} · Octoprov`;
    $("title").textContent = t.hostname;
    $("crumb").textContent = t.hostname;
    const said = O.statusText(t.status) + (t.currentStep && !final ? ` · ${t.currentStep}` : "");
    if ($("status").textContent !== said) $("status").replaceChildren(O.icon(t.status), said);  // a live region: only news
    $("status").dataset.status = t.status;
    const progress = $("progress");
    progress.value = t.progressPercent;
    progress.className = t.status === "completed" ? "done" : t.status === "failed" || t.status === "cancelled" ? "bad" : "";
    $("progress-text").textContent = `${t.progressPercent}%`;
    $("error").hidden = !t.errorMessage;
    $("error").textContent = t.errorMessage || "";
    $("cancel").hidden = final;
    $("retry").hidden = t.status !== "failed";

    const target = O.TARGETS[t.targetType] || t.targetType;
    const started = t.startedAt ? new Date(t.startedAt) : null;
    $("facts").replaceChildren(
      ...fact("Target", nodeName ? `${target} on ${nodeName}` : target),
      ...(t.macAddress ? fact("MAC address", t.macAddress) : []),
      ...fact("Created", O.when(t.createdAt)),
      ...(started ? fact(final ? "Took" : "Running for", O.duration((t.completedAt ? new Date(t.completedAt) : new Date()) - started)) : []),
      ...(t.templateId ? fact("Template", `#${t.templateId}`) : []));

    $("steps").replaceChildren(...(t.steps || []).map((step) => h("li", { class: step.status, "data-step": step.name },
      O.icon(step.status),
      h("span", { class: "title" }, step.title, h("span", { class: "vh", text: `: ${step.status}` })),
      h("span", { class: "dur", text: stepDuration(step) }),
      step.detail ? h("span", { class: "detail", text: step.detail }) : null)));

    const config = JSON.stringify(t.config, null, 2);
    if (config !== configText) {
      configText = config;
      $("config").textContent = config;
    }
    if (t.resultNodeId && machineShown !== t.resultNodeId) showMachine(t.resultNodeId);
  };

  const showMachine = async (nodeId) => {
    machineShown = nodeId;
    try {
      const m = await O.get(`/nodes/${nodeId}`);
      $("machine").replaceChildren(...fact("Name", m.hostname || m.name), ...fact("OS", m.osName || m.osType),
        ...fact("MAC addresses", (m.macAddresses || []).join(", ") || "–"),
        ...fact("IP addresses", (m.ipAddresses || []).join(", ") || "–"));
      $("machine-card").hidden = false;
    } catch (_) {
      machineShown = null;
    }
  };

  const appendLogs = (all) => {
    const entries = all.filter((e) => e.id > lastLogId);  // a stream's snapshot may repeat what polling showed
    if (!entries.length) return;
    const list = $("logs");
    const wrap = list.parentElement;
    list.append(...entries.map((e) => h("li", { class: `lvl-${e.level}`, "data-log-id": e.id },
      `${O.clock(e.timestamp)} [${e.level.toUpperCase()}] ${e.step ? e.step + ": " : ""}${e.message || ""}`)));
    lastLogId = entries[entries.length - 1].id;
    while (list.children.length > MAX_LOG_LINES) list.firstElementChild.remove();
    if ($("follow").checked) wrap.scrollTop = wrap.scrollHeight;
  };

  const showTask = async (t) => {
    if (!nodeName && t.hypervisorNodeId) {
      nodeName = await O.get(`/hypervisors/${t.hypervisorNodeId}`).then((n) => n.name, () => null);
    }
    render(t);
  };

  const poll = async () => {
    clearTimeout(timer);
    if (live || !O.enabled("polling")) return;
    let delay = 1000;
    try {
      const [t, logs] = await Promise.all([O.get(`/tasks/${id}`), O.get(`/tasks/${id}/logs?afterId=${lastLogId}&limit=500`)]);
      await showTask(t);
      appendLogs(logs);
      if (logs.length === 500) delay = 0;
      else if (O.FINAL.has(t.status)) {
        if (++finalPolls > 1) return;
        delay = 1500;
      } else finalPolls = 0;
    } catch (exc) {
      if (exc.status === 401) return;
      if (exc.status === 404) {
        $("status").textContent = `No task with id ${id}.`;
        return;
      }
      O.say(`Could not refresh: ${exc.message}; trying again.`, true);
      delay = 5000;
    }
    timer = setTimeout(poll, document.hidden ? Math.max(delay, 5000) : delay);
  };
  const restart = () => {
    finalPolls = 0;
    poll();
  };
  document.addEventListener("visibilitychange", () => { if (!document.hidden && task && !O.FINAL.has(task.status)) poll(); });

  /* Events are handled one after the other: a task event may wait for the node's name. */
  let handled = Promise.resolve();
  const follow = () => {
    live = O.follow(`/tasks/${id}/events`, {
      onEvent: (kind, data) => {
        handled = handled.then(() => (kind === "task" ? showTask(data) : kind === "log" ? appendLogs([data]) : null));
      },
      onFail: () => {
        live = null;
        poll();
      },
    });
  };

  $("cancel").addEventListener("click", async () => {
    if (!O.confirm(`Cancel ${task ? task.hostname : "this task"}? The running step stops and everything the task created is removed.`)) return;
    $("cancel").disabled = true;
    try {
      render(await O.api("DELETE", `/tasks/${id}`));
      O.say("Cancelled; the rollback runs in the background.");
    } catch (exc) {
      if (exc.status !== 401) O.say(`Could not cancel: ${exc.message}`, true);
    } finally {
      $("cancel").disabled = false;
      restart();
    }
  });
  $("retry").addEventListener("click", async () => {
    $("retry").disabled = true;
    try {
      render(await O.api("POST", `/tasks/${id}/retry`));
      O.say("Restarted from the failed step.");
    } catch (exc) {
      if (exc.status !== 401) O.say(`Could not retry: ${exc.message}`, true);
    } finally {
      $("retry").disabled = false;
      restart();
    }
  });

  if (O.enabled("live")) follow();
  else poll();
})();
