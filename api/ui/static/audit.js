/* The audit log: who changed what, from where, with which outcome (GET /api/v1/audit, admins only). */
"use strict";
(() => {
  const O = window.Octo;
  if (O.blocked) return;
  const form = document.getElementById("audit-filters");
  const body = document.querySelector("#audit-table tbody");
  const message = document.getElementById("audit-message");
  const load = async () => {
    const query = new URLSearchParams({ perPage: "200" });
    for (const [name, value] of new FormData(form)) if (String(value).trim()) query.set(name, String(value).trim());
    try {
      const page = await O.api("GET", "/api/v1/audit?" + query);
      message.hidden = true;
      body.replaceChildren(...page.items.map((e) => O.h("tr", {},
        O.h("td", {}, O.when(e.at)), O.h("td", {}, e.actor), O.h("td", {}, e.role || ""),
        O.h("td", {}, e.source || ""), O.h("td", {}, e.action),
        O.h("td", {}, [e.objectType, e.objectId].filter(Boolean).join(" ")),
        O.h("td", { class: "result-" + e.result }, `${e.result} (${e.status ?? ""})`))));
    } catch (error) {
      body.replaceChildren();
      message.textContent = error.message;
      message.hidden = false;
    }
  };
  form.addEventListener("input", load);
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  load();
})();
