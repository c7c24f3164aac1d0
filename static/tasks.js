// The tasks page keeps its counts current: every 5 seconds while it is in view it asks
// the JSON API for the task counts and the activity of the last minutes.
"use strict";
(function () {
  const EVERY_MS = 5000;
  const status = document.getElementById("live-status");
  const body = document.getElementById("task-stats-body");

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); });
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = String(text);
    return td;
  }

  function showStats(rows) {
    if (!body) return;  // no table until the first task exists: a reload shows it
    body.replaceChildren(...rows.map((s) => {
      const tr = document.createElement("tr");
      for (const v of [s.kind, s.state, s.tasks, s.done_labels, s.required_labels, s.leased_labels]) {
        tr.appendChild(cell(v));
      }
      return tr;
    }));
  }

  function showActivity(a) {
    document.getElementById("per-minute").textContent = a.per_minute.toFixed(1);
    document.getElementById("submitted-recent").textContent = a.submitted;
    document.getElementById("active-labelers").textContent = a.active_labelers;
    document.getElementById("leased-now").textContent = a.leased_now;
    status.textContent = "Live: updated " + new Date().toLocaleTimeString() + ", every 5 seconds.";
  }

  function refresh() {
    if (document.hidden) return;
    Promise.all([getJSON("/api/v1/tasks/stats"), getJSON("/api/v1/tasks/activity")])
      .then(([stats, activity]) => { showStats(stats); showActivity(activity); })
      .catch(() => { status.textContent = "Not updating: the server did not answer. Reload to try again."; });
  }

  setInterval(refresh, EVERY_MS);
  document.addEventListener("visibilitychange", refresh);
})();
