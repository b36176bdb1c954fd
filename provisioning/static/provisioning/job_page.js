// The job page, live: the tenant's status WebSocket (the staff session authenticates it) says
// when something changed; the page then fetches its live parts (buttons, timeline, fields,
// events) from the server, which draws them exactly as on the page, and puts them in place.
(function () {
  "use strict";

  const root = document.querySelector("[data-job-live]");
  if (!root || !window.MatihLive) return;
  const { connect, refresher, stateBadge } = window.MatihLive;

  const refresh = refresher(root.dataset.liveUrl, 500);
  // What the page shows: the job and version drawn last (kept on the timeline region).
  const shown = () => {
    const timeline = document.querySelector('[data-live-region="timeline"]');
    return timeline ? `${timeline.dataset.jobId}:${timeline.dataset.version}` : "";
  };

  let opened = 0;
  connect(root.dataset.wsPath, {
    onState: stateBadge(document.getElementById("live-state")),
    onOpen() {
      if (opened++ > 0) refresh(); // after a lost connection the page may have missed changes
    },
    onMessage(message) {
      if (message.type !== "provisioning.status" || !message.data) return;
      if (`${message.data.jobId}:${message.data.version}` === shown()) return;
      refresh();
    },
  });
})();
