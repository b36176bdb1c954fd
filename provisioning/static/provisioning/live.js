// What the dashboard and the job page share: a WebSocket that reconnects, parts of the page
// fetched again from the server and put in place, and the pages' time format.
(function () {
  "use strict";

  // "2026-01-02T03:04:05.678901Z" -> "03:04:05.678": the server's `clock` filter
  // (provisioning/templatetags/matih_dashboard.py) shows the same.
  function clock(iso) {
    const match = /T(\d\d:\d\d:\d\d)(?:\.(\d+))?/.exec(iso || "");
    return match ? `${match[1]}.${((match[2] || "") + "000").slice(0, 3)}` : "";
  }

  function timeElement(iso) {
    const node = document.createElement("time");
    node.dateTime = iso;
    node.title = `${iso.slice(0, 10)} ${clock(iso)} UTC`;
    node.textContent = clock(iso);
    return node;
  }

  // A DOMAIN_NAME that may wrap after its underscores, as the server's `breakable` filter.
  function breakable(text) {
    const fragment = document.createDocumentFragment();
    String(text || "").split("_").forEach((part, index, parts) => {
      fragment.append(part + (index < parts.length - 1 ? "_" : ""));
      if (index < parts.length - 1) fragment.append(document.createElement("wbr"));
    });
    return fragment;
  }

  // One WebSocket to `path` (the staff session authenticates it), opened again after a loss.
  function connect(path, { onMessage, onState, onOpen }) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let delay = 500;
    function open() {
      onState("connecting", "connecting…");
      const socket = new WebSocket(`${scheme}//${location.host}${path}`);
      socket.onopen = () => { delay = 500; onState("live", "live"); if (onOpen) onOpen(); };
      socket.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (error) { return; }
        onMessage(message);
      };
      socket.onclose = (event) => {
        if (event.code === 4401) { onState("offline", "signed out: reload to log in"); return; }
        if (event.code === 4404) { onState("offline", "not found"); return; }
        onState("offline", "reconnecting…");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  // Regions are elements with data-live-region="name"; a fresh one replaces its namesake,
  // unless only its "as of" time changed (then only that is updated: nothing moves under
  // the pointer).
  function withoutAsOf(node) {
    const copy = node.cloneNode(true);
    copy.querySelectorAll(".as-of").forEach((stamp) => stamp.remove());
    return copy.innerHTML;
  }

  function swapRegions(html) {
    const fresh = new DOMParser().parseFromString(html, "text/html");
    for (const region of fresh.querySelectorAll("[data-live-region]")) {
      const current = document.querySelector(`[data-live-region="${region.dataset.liveRegion}"]`);
      if (!current) continue;
      if (withoutAsOf(current) === withoutAsOf(region)) {
        const [now, then] = [current.querySelector(".as-of"), region.querySelector(".as-of")];
        if (now && then) now.replaceWith(document.importNode(then, true));
        continue;
      }
      current.replaceWith(document.importNode(region, true));
    }
  }

  // Returns `request()`: fetch `url` and swap its regions in, at most once per `interval` ms,
  // one fetch at a time; requests made meanwhile are served by one more fetch afterwards.
  function refresher(url, interval) {
    let timer = null;
    let busy = false;
    let again = false;
    let last = Date.now(); // the page was just drawn
    async function run() {
      timer = null;
      busy = true;
      again = false;
      last = Date.now();
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        // A redirect is the login page: the session ended; the socket says so too.
        if (response.ok && !response.redirected) swapRegions(await response.text());
      } catch (error) {
        // The next change, or the periodic refresh, tries again.
      } finally {
        busy = false;
        if (again) request();
      }
    }
    function request() {
      if (busy) { again = true; return; }
      if (timer !== null) return;
      timer = setTimeout(run, Math.max(0, last + interval - Date.now()));
    }
    return request;
  }

  function stateBadge(element) {
    return (state, label) => {
      if (!element) return;
      element.dataset.state = state;
      element.textContent = label;
    };
  }

  window.MatihLive = { clock, timeElement, breakable, connect, refresher, swapRegions, stateBadge };
})();
