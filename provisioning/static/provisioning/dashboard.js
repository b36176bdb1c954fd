// The provisioning dashboard's live rows: one WebSocket to /ws/provisioning/ (the staff
// session authenticates it); each message is a tenant's status, read by the server from
// provisioning_status. Rows are updated in place, new tenants get a new row, nothing reloads.
(function () {
  "use strict";

  const table = document.getElementById("active-jobs");
  if (!table) return;
  const body = table.tBodies[0];
  const liveState = document.getElementById("live-state");
  const emptyNote = document.getElementById("no-active");
  const retryTemplate = document.getElementById("retry-template");
  const NIL = "00000000-0000-0000-0000-000000000000";
  const canAct = table.dataset.canAct === "true";
  const lastMark = new Map(); // tenantId -> [jobId, version]: never show an older status over a newer one

  function urlFor(pattern, id) { return pattern.replace(NIL, id); }

  function clock(iso) { return iso ? iso.slice(11, 19) + " UTC" : ""; }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value; else node.setAttribute(name, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function setState(state, label) {
    liveState.dataset.state = state;
    liveState.textContent = label;
  }

  function isNewer(status) {
    const last = lastMark.get(status.tenantId);
    if (!last) return true;
    if (last[0] !== status.jobId) return true;
    return (status.version || 0) > (last[1] || 0);
  }

  function newRow(tenant) {
    const cells = ["tenant", "tier", "tenant-status", "job-status", "phase", "progress", "retries", "when", "actions"]
      .map((name) => el("td", { class: name }));
    const row = el("tr", { "data-tenant-id": tenant.id }, cells);
    row.querySelector(".tenant").appendChild(el("a", { href: urlFor(table.dataset.tenantUrl, tenant.id), text: tenant.slug }));
    const bar = el("span", { class: "matih-bar" }, [el("span")]);
    row.querySelector(".progress").append(bar, " ", el("span", { class: "pct" }));
    body.insertBefore(row, body.firstChild);
    if (emptyNote) emptyNote.hidden = true;
    return row;
  }

  function retryButton(jobId) {
    const form = retryTemplate.cloneNode(true);
    form.removeAttribute("id");
    form.hidden = false;
    form.action = urlFor(table.dataset.retryUrl, jobId);
    return form;
  }

  function render(status, tenant) {
    let row = body.querySelector(`tr[data-tenant-id="${status.tenantId}"]`);
    if (!row) row = newRow(tenant || { id: status.tenantId, slug: status.tenantId.slice(0, 8) });
    row.dataset.tenantStatus = status.status;
    row.dataset.jobStatus = status.jobStatus || "";
    row.querySelector(".tier").textContent = status.tier;
    const badge = el("span", { class: `badge badge-${status.status}`, text: status.status });
    row.querySelector(".tenant-status").replaceChildren(badge);
    const job = row.querySelector(".job-status");
    job.replaceChildren(status.jobId
      ? el("a", { href: urlFor(table.dataset.jobUrl, status.jobId), text: status.jobStatus })
      : document.createTextNode("-"));
    row.querySelector(".phase").textContent = status.currentPhase || "-";
    row.querySelector(".matih-bar > span").style.width = `${status.progress}%`;
    row.querySelector(".pct").textContent = `${status.progress}%`;
    row.querySelector(".retries").textContent = `${status.retryCount}/${status.maxRetries}`;
    let when = "";
    if (status.jobStatus === "RETRY_SCHEDULED" && status.nextRetryAt) when = `retry at ${clock(status.nextRetryAt)}`;
    else if (status.estimatedCompletion) when = `ETA ${clock(status.estimatedCompletion)}`;
    else if (status.completedAt) when = `done ${clock(status.completedAt)}`;
    row.querySelector(".when").textContent = when;
    const actions = row.querySelector(".actions");
    actions.replaceChildren(canAct && status.jobStatus === "RETRY_SCHEDULED" ? retryButton(status.jobId) : "");
    row.classList.remove("updated");
    void row.offsetWidth; // restart the flash
    row.classList.add("updated");
  }

  let socket = null;
  let delay = 500;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    setState("connecting", "connecting…");
    socket = new WebSocket(`${scheme}//${location.host}${table.dataset.wsPath}`);
    socket.onopen = () => { delay = 500; setState("live", "live"); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "provisioning.status" || !isNewer(message.data)) return;
      lastMark.set(message.data.tenantId, [message.data.jobId, message.data.version]);
      render(message.data, message.tenant);
    };
    socket.onclose = (event) => {
      if (event.code === 4401) { setState("offline", "signed out: reload to log in"); return; }
      setState("offline", "reconnecting…");
      // The server sends every live row again on reconnect: nothing is lost while away.
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  connect();
})();
