// The loop page: charts of every round (Chart.js) and a table that follow the JSON at
// /api/v1/loop, fetched again every few seconds. Text goes in through textContent only:
// names and reasons are data, never markup.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var source = document.getElementById("loop-data");
  var table = document.getElementById("loop-table");
  if (!source || !table) return;
  var charts = {};

  var pct = function (x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%"; };
  var num = function (x, digits) {
    return x === null || x === undefined ? "—" : Number(x).toFixed(digits === undefined ? 2 : digits);
  };
  var signed = function (x) {
    return x === null || x === undefined ? "—" : (x >= 0 ? "+" : "") + Math.round(x * 100) + "%";
  };
  var chartPct = function (x) { return x === null || x === undefined ? null : Math.round(x * 1000) / 10; };

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function cell(parts) {  // [[text, muted?], …] in one right-aligned cell
    var td = el("td", null, "num");
    parts.forEach(function (p, i) {
      if (i) td.appendChild(document.createTextNode(" "));
      td.appendChild(p[1] ? el("span", p[0], "muted") : document.createTextNode(p[0]));
    });
    return td;
  }

  function winCell(w) {
    if (!w || w.win_rate === null) return cell([["—"]]);
    var parts = [[pct(w.win_rate)]];
    if (w.ci95) parts.push(["[" + Math.round(w.ci95[0] * 100) + "–" + Math.round(w.ci95[1] * 100) + "]", true]);
    parts.push(["n " + w.n, true]);
    // the round's RM on the same pairs: where it and people part ways, the watch flags it
    if (w.rm_win_rate !== null && w.rm_win_rate !== undefined) {
      parts.push(["· RM " + Math.round(w.rm_win_rate * 100) + "%", true]);
    }
    var td = cell(parts);
    if (parts.length > 3) td.lastChild.title = "How often the round's reward model prefers the policy on the same pairs";
    return td;
  }

  function row(r) {
    var s = r.watch.signals, tr = el("tr");
    tr.dataset.roundId = r.round_id;
    if (r.watch.flags.length) tr.className = "flagged";
    var first = el("td", r.round_id + " ");
    first.appendChild(el("span", r.state, "badge"));
    if (r.models.policy) {
      first.appendChild(document.createTextNode(" "));
      first.appendChild(el("span", r.models.policy.name, "muted policy-name"));
    }
    tr.appendChild(first);
    var flags = el("td");
    r.watch.flags.forEach(function (f) {
      var badge = el("span", f, "flag");
      badge.title = r.watch.reasons[f];
      flags.appendChild(badge);
    });
    if (!r.watch.flags.length) flags.appendChild(el("span", "—", "muted"));
    tr.appendChild(flags);
    tr.appendChild(cell([[num(r.data.demonstrations, 0)], ["/ " + num(r.data.rankings, 0), true]]));
    tr.appendChild(cell([[pct(r.data.agreement)]]));
    tr.appendChild(cell([[pct(r.rm.val_accuracy)], ["/ " + pct(r.rm.labeler_ceiling), true]]));
    tr.appendChild(cell([[num(r.ppo.reward)], ["(" + num(r.ppo.sft_reward) + ")", true]]));
    tr.appendChild(cell([[num(r.ppo.kl)]]));
    tr.appendChild(winCell(r.human.vs_sft));
    tr.appendChild(winCell(r.human.vs_previous));
    tr.appendChild(cell([[signed(s.length_change)]]));
    tr.appendChild(cell([[pct(s.at_limit_share)], ["/ " + pct(s.no_eos_share), true]]));
    tr.appendChild(cell([[pct(s.repeated_ngram_share)], ["/ " + pct(s.sft_repeated_ngram_share), true]]));
    tr.appendChild(cell([[pct(s.distinct_2)], ["/ " + pct(s.sft_distinct_2), true]]));
    return tr;
  }

  function renderTable(data) {
    var body = table.tBodies[0];
    body.replaceChildren.apply(body, data.rounds.map(row));
    document.getElementById("no-rounds").hidden = data.rounds.length > 0;
    var reasons = document.getElementById("reasons"), items = [];
    data.rounds.forEach(function (r) {
      r.watch.flags.forEach(function (f) {
        var li = el("li");
        li.appendChild(el("strong", "Round " + r.round_id));
        li.appendChild(document.createTextNode(" · "));
        li.appendChild(el("span", f, "flag"));
        li.appendChild(document.createTextNode(" " + r.watch.reasons[f]));
        items.push(li);
      });
    });
    reasons.replaceChildren.apply(reasons, items);
    document.getElementById("no-flags").hidden = items.length > 0;
  }

  // 95% intervals as whiskers over the points of datasets that carry `ci` ([lo, hi] in %).
  var whiskers = {
    id: "whiskers",
    afterDatasetsDraw: function (chart) {
      var y = chart.scales.y, ctx = chart.ctx;
      ctx.save();
      chart.data.datasets.forEach(function (ds, d) {
        if (!ds.ci || !chart.isDatasetVisible(d)) return;
        ctx.strokeStyle = ds.borderColor;
        chart.getDatasetMeta(d).data.forEach(function (pt, i) {
          var ci = ds.ci[i];
          if (!ci) return;
          var lo = y.getPixelForValue(ci[0]), hi = y.getPixelForValue(ci[1]);
          ctx.beginPath();
          ctx.moveTo(pt.x, lo); ctx.lineTo(pt.x, hi);
          ctx.moveTo(pt.x - 4, lo); ctx.lineTo(pt.x + 4, lo);
          ctx.moveTo(pt.x - 4, hi); ctx.lineTo(pt.x + 4, hi);
          ctx.stroke();
        });
      });
      ctx.restore();
    }
  };

  function line(label, values, color, extra) {
    var ds = { label: label, data: values, borderColor: color, backgroundColor: color,
               spanGaps: true, tension: 0, pointRadius: 3 };
    return Object.assign(ds, extra || {});
  }

  function datasets(data) {
    var rs = data.rounds, sig = function (k) { return rs.map(function (r) { return r.watch.signals[k]; }); };
    var ci = function (k) {
      return rs.map(function (r) {
        var w = r.human[k];
        return w && w.ci95 ? [w.ci95[0] * 100, w.ci95[1] * 100] : null;
      });
    };
    var win = function (k) { return rs.map(function (r) { return r.human[k] ? chartPct(r.human[k].win_rate) : null; }); };
    return {
      rm: [line("RM validation accuracy (%)", rs.map(function (r) { return chartPct(r.rm.val_accuracy); }), "#2856d8"),
           line("Labelers' agreement (%)", rs.map(function (r) { return chartPct(r.rm.labeler_ceiling); }), "#a76200",
                { borderDash: [6, 4] })],
      human: [line("vs SFT (%)", win("vs_sft"), "#2856d8", { ci: ci("vs_sft") }),
              line("vs previous policy (%)", win("vs_previous"), "#1e7f4f", { ci: ci("vs_previous") }),
              line("as good (50%)", rs.map(function () { return 50; }), "#8a929c", { borderDash: [4, 4], pointRadius: 0 })],
      ppo: [line("RM score", rs.map(function (r) { return r.ppo.reward; }), "#2856d8"),
            line("SFT's RM score", rs.map(function (r) { return r.ppo.sft_reward; }), "#8a929c", { borderDash: [4, 4] }),
            line("KL to SFT (nats)", rs.map(function (r) { return r.ppo.kl; }), "#c2332b", { yAxisID: "kl" })],
      watch: [line("Length vs SFT (%)", sig("length_change").map(chartPct), "#a76200"),
              line("Repeated 3-grams, policy − SFT (points)", rs.map(function (r) {
                var a = r.watch.signals.repeated_ngram_share, b = r.watch.signals.sft_repeated_ngram_share;
                return typeof a === "number" && typeof b === "number" ? chartPct(a - b) : null;
              }), "#c2332b")]
    };
  }

  var SCALES = {
    rm: { y: { min: 0, max: 100 } },
    human: { y: { min: 0, max: 100 } },
    ppo: { y: { title: { display: true, text: "RM score" } },
           kl: { position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "KL" } } },
    watch: { y: {} }
  };

  function drawCharts(data) {
    if (typeof Chart === "undefined") return;
    var labels = data.rounds.map(function (r) { return "Round " + r.round_id; });
    var sets = datasets(data);
    Object.keys(sets).forEach(function (key) {
      if (charts[key]) {
        charts[key].data.labels = labels;
        charts[key].data.datasets = sets[key];
        charts[key].update("none");
        return;
      }
      var canvas = document.getElementById("chart-" + key);
      charts[key] = new Chart(canvas, {
        type: "line", plugins: key === "human" ? [whiskers] : [],
        data: { labels: labels, datasets: sets[key] },
        options: { maintainAspectRatio: false, animation: false, scales: SCALES[key],
                   plugins: { legend: { labels: { boxWidth: 12 } } } }
      });
      canvas.dataset.ready = "1";
    });
  }

  function refresh() {
    fetch("/api/v1/loop", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (data) {
        if (!data) return;
        renderTable(data);
        drawCharts(data);
        table.dataset.refreshed = String(Number(table.dataset.refreshed) + 1);
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  drawCharts(JSON.parse(source.textContent));
  window.loopCharts = charts;
  setInterval(refresh, REFRESH_MS);
})();
