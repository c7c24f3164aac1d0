// Jobs pages: a job's live state, log and Chart.js charts (polling the JSON API every 2 s
// while the job is live), and live state badges on the rounds list. Data comes from the
// API and JSON blocks in the page; nothing is inserted as HTML (textContent only).
(function () {
  "use strict";

  var ENDED = ["succeeded", "failed", "cancelled"];
  var POLL_MS = 2000;
  var COLORS = ["#2856d8", "#c2332b", "#1e7f4f", "#a76200", "#7b3fb5", "#0f7c8c"];

  // What to draw, by metric key (TRL names); a chart appears when any of its keys exist.
  var CHARTS = [
    { id: "loss", title: "Loss (train and validation)", keys: ["loss", "val/loss"] },
    { id: "accuracy", title: "Reward model accuracy", keys: ["accuracy", "val/accuracy"], percent: true },
    { id: "reward", title: "Reward (RM score of the policy's samples)", keys: ["objective/scores", "val/reward", "objective/rlhf_reward"] },
    { id: "kl", title: "KL to the SFT model", keys: ["objective/kl"] },
    { id: "ptx", title: "Pretraining (ptx) loss", keys: ["ppo/loss/ptx"] },
    { id: "entropy", title: "Entropy", keys: ["objective/entropy"] },
    { id: "heldout", title: "Held-out LM loss", keys: ["val/heldout_lm_loss"] }
  ];
  var SCATTER = { id: "goodhart", title: "Reward vs KL (each point a step; darker is later)", x: "objective/kl", y: "objective/scores" };
  var LABELS = { "loss": "train loss", "val/loss": "validation loss", "accuracy": "train accuracy", "val/accuracy": "validation accuracy", "objective/scores": "reward", "val/reward": "validation reward", "objective/rlhf_reward": "reward − KL penalty" };

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(url + " answered " + r.status);
        return r.json();
      });
  }

  function points(series) {
    return (series || []).map(function (p) { return { x: p[0], y: p[1] }; });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }

  function setState(badge, state) {
    if (!badge) return;
    badge.textContent = state;
    badge.className = "badge state state-" + state;
  }

  // ---- one job's page --------------------------------------------------------------
  function jobPage(info) {
    var charts = {};
    var used = {};
    var holder = document.getElementById("charts");
    var otherKey = document.getElementById("other-key");
    var otherChart = null;
    var lastSeries = {};

    function lineChart(canvas, datasets, percent) {
      return new Chart(canvas, {
        type: "line",
        data: { datasets: datasets },
        options: {
          animation: false, maintainAspectRatio: false, parsing: true, normalized: true,
          interaction: { mode: "nearest", intersect: false },
          elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2 } },
          scales: {
            x: { type: "linear", title: { display: true, text: "step" } },
            y: percent ? { suggestedMin: 0, suggestedMax: 1 } : {}
          }
        }
      });
    }

    function dataset(key, series, i) {
      return { label: LABELS[key] || key, data: points(series), borderColor: COLORS[i % COLORS.length],
               backgroundColor: COLORS[i % COLORS.length], spanGaps: true,
               pointRadius: (series || []).length < 20 ? 3 : 0 };
    }

    function box(id, title) {
      var card = el("figure", { "class": "chart-card", id: "figure-" + id });
      card.appendChild(el("figcaption", {}, title));
      var wrap = el("div", { "class": "chart-box" });
      var canvas = el("canvas", { id: "chart-" + id, role: "img", "aria-label": title });
      wrap.appendChild(canvas);
      card.appendChild(wrap);
      holder.appendChild(card);
      return canvas;
    }

    function drawLines(series) {
      CHARTS.forEach(function (spec) {
        var present = spec.keys.filter(function (k) { return series[k] && series[k].length; });
        if (!present.length) return;
        present.forEach(function (k) { used[k] = true; });
        var sets = present.map(function (k) { return dataset(k, series[k], spec.keys.indexOf(k)); });
        if (!charts[spec.id]) {
          charts[spec.id] = lineChart(box(spec.id, spec.title), sets, spec.percent);
        } else {
          charts[spec.id].data.datasets = sets;
          charts[spec.id].update("none");
        }
      });
    }

    function drawScatter(series) {
      var xs = series[SCATTER.x], ys = series[SCATTER.y];
      if (!xs || !ys || !xs.length || !ys.length) return;
      var byStep = {};
      xs.forEach(function (p) { byStep[p[0]] = p[1]; });
      var pts = [];
      ys.forEach(function (p) { if (p[0] in byStep) pts.push({ x: byStep[p[0]], y: p[1], step: p[0] }); });
      if (!pts.length) return;
      var colors = pts.map(function (_, i) {
        var t = pts.length > 1 ? i / (pts.length - 1) : 1;
        return "rgba(40, 86, 216, " + (0.4 + 0.6 * t).toFixed(2) + ")";
      });
      var set = { label: "steps", data: pts, pointBackgroundColor: colors, pointBorderColor: colors, pointRadius: 4 };
      if (!charts[SCATTER.id]) {
        charts[SCATTER.id] = new Chart(box(SCATTER.id, SCATTER.title), {
          type: "scatter",
          data: { datasets: [set] },
          options: {
            animation: false, maintainAspectRatio: false,
            plugins: {
              legend: { display: false },
              tooltip: { callbacks: { label: function (c) { return "step " + c.raw.step + ": KL " + c.raw.x.toFixed(4) + ", reward " + c.raw.y.toFixed(4); } } }
            },
            scales: {
              x: { title: { display: true, text: "KL to SFT" } },
              y: { title: { display: true, text: "reward (RM score)" } }
            }
          }
        });
      } else {
        charts[SCATTER.id].data.datasets = [set];
        charts[SCATTER.id].update("none");
      }
    }

    function drawOther(series) {
      var rest = Object.keys(series).filter(function (k) { return !used[k]; }).sort();
      var panel = document.getElementById("other-metric");
      if (!rest.length) { panel.hidden = true; return; }
      panel.hidden = false;
      var chosen = otherKey.value || rest[0];
      var have = Array.prototype.map.call(otherKey.options, function (o) { return o.value; });
      if (have.join("\n") !== rest.join("\n")) {
        while (otherKey.firstChild) otherKey.removeChild(otherKey.firstChild);
        rest.forEach(function (k) { otherKey.appendChild(el("option", { value: k }, k)); });
        otherKey.value = rest.indexOf(chosen) >= 0 ? chosen : rest[0];
      }
      var key = otherKey.value;
      var sets = [dataset(key, series[key], 4)];
      if (!otherChart) {
        otherChart = lineChart(document.getElementById("chart-other"), sets, false);
      } else {
        otherChart.data.datasets = sets;
        otherChart.update("none");
      }
    }

    function draw(series) {
      lastSeries = series;
      var any = Object.keys(series).some(function (k) { return series[k].length; });
      document.getElementById("no-metrics").hidden = any;
      if (!any || typeof Chart === "undefined") return;
      drawLines(series);
      drawScatter(series);
      drawOther(series);
    }

    otherKey.addEventListener("change", function () { drawOther(lastSeries); });

    function showJob(job) {
      setState(document.getElementById("job-state"), job.state);
      var bar = document.getElementById("job-progress");
      bar.value = job.progress;
      document.getElementById("job-pct").textContent = Math.round(job.progress * 100) + "%";
      var error = document.getElementById("job-error");
      error.textContent = job.error || "";
      error.hidden = !job.error;
      document.getElementById("job-worker").textContent = job.worker || "—";
    }

    function showLog(log) {
      var pre = document.getElementById("job-log");
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (pre.textContent !== log.log_tail) {
        pre.textContent = log.log_tail;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
    }

    var base = "/api/v1/jobs/" + info.id;
    function refresh() {
      return Promise.all([getJSON(base), getJSON(base + "/metrics?max_points=500"), getJSON(base + "/log")])
        .then(function (got) {
          showJob(got[0]);
          draw(got[1].series || {});
          showLog(got[2]);
          return got[0];
        });
    }

    function poll() {
      refresh().then(function (job) {
        if (ENDED.indexOf(job.state) >= 0) {
          // The server renders what an ended job offers (retry, its model version, outputs).
          window.location.reload();
          return;
        }
        window.setTimeout(poll, POLL_MS);
      }).catch(function () { window.setTimeout(poll, POLL_MS * 2); });
    }

    var pre = document.getElementById("job-log");
    pre.scrollTop = pre.scrollHeight;
    if (info.live) {
      window.setTimeout(poll, 0);
    } else {
      getJSON(base + "/metrics?max_points=1000").then(function (m) { draw(m.series || {}); });
    }
  }

  // ---- the rounds list -----------------------------------------------------------------
  function listPage() {
    var dirty = false;
    document.querySelectorAll("form").forEach(function (f) {
      f.addEventListener("input", function () { dirty = true; });
    });
    function rows() { return document.querySelectorAll("tr[data-job-id]"); }
    // A round waiting for people has only ended jobs, yet its decision may add some.
    function waiting() { return document.querySelectorAll('article.round[data-state="awaiting_judgment"]'); }
    function anyLive() {
      return waiting().length > 0 ||
        Array.prototype.some.call(rows(), function (tr) { return ENDED.indexOf(tr.dataset.state) < 0; });
    }
    if (!anyLive()) return;
    function poll() {
      var roundsNow = waiting().length ? getJSON("/api/v1/rounds") : Promise.resolve([]);
      Promise.all([getJSON("/api/v1/jobs?limit=500"), roundsNow]).then(function (got) {
        var list = got[0];
        var changed = got[1].some(function (r) {
          var el = document.querySelector('article.round[data-round-id="' + r.id + '"]');
          return el !== null && el.dataset.state !== r.state;
        });
        var byId = {};
        list.forEach(function (j) { byId[j.id] = j; });
        Array.prototype.forEach.call(rows(), function (tr) {
          var job = byId[tr.dataset.jobId];
          if (!job) return;
          if (job.state !== tr.dataset.state) changed = true;
          tr.dataset.state = job.state;
          setState(tr.querySelector("[data-role=state]"), job.state);
          var bar = tr.querySelector("[data-role=progress]");
          if (bar) bar.value = job.progress;
          var pct = tr.querySelector("[data-role=pct]");
          if (pct) pct.textContent = Math.round(job.progress * 100) + "%";
        });
        if (changed && !dirty) { window.location.reload(); return; }
        if (anyLive()) window.setTimeout(poll, POLL_MS);
      }).catch(function () { window.setTimeout(poll, POLL_MS * 2); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  var jobData = document.getElementById("job-data");
  if (jobData) jobPage(JSON.parse(jobData.textContent));
  if (document.getElementById("jobs-page")) listPage();
})();
