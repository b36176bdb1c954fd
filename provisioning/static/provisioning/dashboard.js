// The provisioning dashboard, live. One WebSocket to /ws/provisioning/ (the staff session
// authenticates it); each message is a tenant's status, read by the server from
// provisioning_status. From it:
// - the tenant's row is drawn here, in "Active jobs" while its job is open and in "Ended in
//   the last minutes" once it ended (the page starts with the same rows, embedded as JSON);
// - the sections the server draws (counts, waiting for a retry, failures, the chart) are
//   fetched again (?sections=...) and put in place. Nothing reloads.
(function () {
  "use strict";

  const root = document.querySelector(".matih-dashboard");
  if (!root || !window.MatihLive) return;
  const { timeElement, breakable, connect, refresher, stateBadge } = window.MatihLive;

  const NIL = "00000000-0000-0000-0000-000000000000";
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const ENDED_MS = Number(root.dataset.endedSeconds || 600) * 1000;
  const ENDED_ROWS = Number(root.dataset.endedRows || 50);
  const canAct = root.dataset.canAct === "true";
  const activeBody = document.querySelector("#active-jobs tbody");
  const endedBody = document.querySelector("#ended-jobs tbody");
  const retryTemplate = document.getElementById("retry-template");
  const lastMark = new Map(); // tenantId -> [jobId, version]: never show an older status over a newer one

  const url = (pattern, id) => pattern.replace(NIL, id);
  const sectionsUrl = (names) => `${root.dataset.sectionsUrl}?sections=${names}`;
  const refreshLists = refresher(sectionsUrl("counts,waiting,failures"), 1000);
  const refreshChart = refresher(sectionsUrl("chart"), 30000);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value; else node.setAttribute(name, value);
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  function isNewer(status) {
    const last = lastMark.get(status.tenantId);
    if (!last || last[0] !== status.jobId) return true;
    return (status.version || 0) > (last[1] || 0);
  }

  function operation(status) {
    if (!status.kind) return ["-"];
    const parts = [el("span", { class: "kind" }, breakable(status.kind))];
    if (status.kind === "CHANGE_TIER") {
      parts.push(" ", el("span", { class: "tiers", text: `${status.fromTier || "?"} → ${status.toTier || "?"}` }));
    }
    return parts;
  }

  function when(status) {
    if (TERMINAL.has(status.jobStatus)) return status.completedAt ? [timeElement(status.completedAt)] : [];
    const label = (text) => el("span", { class: "sub", text });
    if (status.jobStatus === "RETRY_SCHEDULED" && status.nextRetryAt) return [label("retry at"), timeElement(status.nextRetryAt)];
    if (status.estimatedCompletion) return [label("ETA"), timeElement(status.estimatedCompletion)];
    return [];
  }

  function retryButton(jobId) {
    const form = retryTemplate.content.firstElementChild.cloneNode(true);
    form.action = url(form.getAttribute("action"), jobId);
    return form;
  }

  function newRow(tenant) {
    const cells = ["tenant", "operation", "status", "phase", "progress", "retries num", "when", "actions"]
      .map((name) => el("td", { class: name }));
    const row = el("tr", { "data-tenant-id": tenant.id }, ...cells);
    row.querySelector(".tenant").append(
      el("a", { href: url(root.dataset.tenantUrl, tenant.id), text: tenant.slug, title: tenant.name || tenant.slug }),
      el("span", { class: "sub tier" }));
    row.querySelector(".progress").append(el("span", { class: "matih-bar" }, el("span")), " ", el("span", { class: "pct" }));
    return row;
  }

  // Open jobs in "Active jobs", newest first; ended ones in "Ended", latest first.
  function place(row, status, initial) {
    const body = TERMINAL.has(status.jobStatus) ? endedBody : activeBody;
    if (row.parentNode !== body) {
      if (initial) body.append(row); else body.prepend(row);
    }
    row.dataset.endedAt = TERMINAL.has(status.jobStatus) ? (status.completedAt || new Date().toISOString()) : "";
  }

  function render(message, initial) {
    const status = message.data;
    const tenant = message.tenant || { id: status.tenantId, slug: status.tenantId.slice(0, 8) };
    let row = document.querySelector(`.live-rows tr[data-tenant-id="${status.tenantId}"]`);
    if (!row) row = newRow(tenant);
    place(row, status, initial);
    Object.assign(row.dataset, {
      tenantStatus: status.status, jobStatus: status.jobStatus || "", jobId: status.jobId || "",
      kind: status.kind || "",
    });
    row.querySelector(".tier").textContent = status.tier;
    row.querySelector(".operation").replaceChildren(...operation(status));
    row.querySelector(".status").replaceChildren(
      el("span", { class: `badge badge-${status.status} tenant-status`, text: status.status, title: "tenant" }),
      " ",
      status.jobId
        ? el("a", { class: "job-status", href: url(root.dataset.jobUrl, status.jobId), text: status.jobStatus, title: "job" })
        : "-");
    row.querySelector(".phase").replaceChildren(breakable(status.currentPhase || "-"));
    row.querySelector(".matih-bar > span").style.width = `${status.progress}%`;
    row.querySelector(".pct").textContent = `${status.progress}%`;
    row.querySelector(".retries").textContent = `${status.retryCount}/${status.maxRetries}`;
    row.querySelector(".when").replaceChildren(...when(status));
    row.querySelector(".actions").replaceChildren(
      canAct && status.jobStatus === "RETRY_SCHEDULED" ? retryButton(status.jobId) : "");
    if (!initial) {
      row.classList.remove("updated");
      void row.offsetWidth; // restart the flash
      row.classList.add("updated");
    }
  }

  function tidy() {
    const cutoff = Date.now() - ENDED_MS;
    [...endedBody.rows].forEach((row, index) => {
      if (index >= ENDED_ROWS || Date.parse(row.dataset.endedAt) < cutoff) row.remove();
    });
    document.getElementById("no-active").hidden = activeBody.rows.length > 0;
    document.getElementById("no-ended").hidden = endedBody.rows.length > 0;
  }

  function take(message, initial) {
    if (message.type !== "provisioning.status" || !message.data || !isNewer(message.data)) return false;
    lastMark.set(message.data.tenantId, [message.data.jobId, message.data.version]);
    render(message, initial);
    return true;
  }

  const embedded = document.getElementById("live-rows");
  JSON.parse(embedded ? embedded.textContent : "[]").forEach((message) => take(message, true));
  tidy();

  let opened = 0;
  connect(root.dataset.wsPath, {
    onState: stateBadge(document.getElementById("live-state")),
    onOpen() {
      // After a lost connection the sections may have missed changes.
      if (opened++ > 0) { refreshLists(); refreshChart(); }
    },
    onMessage(message) {
      if (!take(message, false)) return;
      tidy();
      refreshLists();
      refreshChart();
    },
  });
  // Pushes are hints: a lost one is made good within half a minute.
  setInterval(() => { tidy(); refreshLists(); refreshChart(); }, 30000);
})();
