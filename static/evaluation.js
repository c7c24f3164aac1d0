// Evaluation results: the paper's Figure 1, each version's win rate against the baseline
// with its 95% interval drawn as an error bar (Chart.js). Data comes from a JSON block.
(function () {
  "use strict";
  var canvas = document.getElementById("winrate-chart");
  var source = document.getElementById("evaluation-results");
  if (!canvas || !source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var rows = data.results.filter(function (r) { return r.win_rate !== null; });
  var pct = function (x) { return x === null ? null : Math.round(x * 1000) / 10; };

  // Whiskers for the 95% intervals, drawn over each bar of the first dataset.
  var errorBars = {
    id: "errorBars",
    afterDatasetsDraw: function (chart) {
      var meta = chart.getDatasetMeta(0), y = chart.scales.y, ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#1b1f24";
      ctx.lineWidth = 1.5;
      meta.data.forEach(function (bar, i) {
        var ci = rows[i].ci95;
        if (!ci) return;
        var lo = y.getPixelForValue(ci[0] * 100), hi = y.getPixelForValue(ci[1] * 100);
        ctx.beginPath();
        ctx.moveTo(bar.x, lo); ctx.lineTo(bar.x, hi);
        ctx.moveTo(bar.x - 6, lo); ctx.lineTo(bar.x + 6, lo);
        ctx.moveTo(bar.x - 6, hi); ctx.lineTo(bar.x + 6, hi);
        ctx.stroke();
      });
      ctx.restore();
    }
  };

  var chart = new Chart(canvas, {
    type: "bar",
    plugins: [errorBars],
    data: {
      labels: rows.map(function (r) { return r.name; }),
      datasets: [
        { type: "bar", label: "Win rate vs " + data.baseline_name + " (%)",
          data: rows.map(function (r) { return pct(r.win_rate); }),
          backgroundColor: "rgba(40,86,216,.55)", borderColor: "#2856d8", borderWidth: 1 },
        { type: "line", label: "Baseline (50%)", data: rows.map(function () { return 50; }),
          borderColor: "#a76200", borderDash: [6, 4], pointRadius: 0 }
      ]
    },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: { y: { min: 0, max: 100, title: { display: true, text: "preferred to the baseline, %" } } },
      plugins: {
        tooltip: {
          callbacks: {
            afterLabel: function (item) {
              var r = rows[item.dataIndex];
              if (item.datasetIndex !== 0 || !r.ci95) return "";
              return "95% CI " + pct(r.ci95[0]) + "–" + pct(r.ci95[1]) + "% · n = " + r.n;
            }
          }
        }
      }
    }
  });
  canvas.dataset.ready = "1";
  window.evaluationChart = chart;
})();
