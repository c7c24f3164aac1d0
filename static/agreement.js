// Agreement page: weekly trend chart (Chart.js) and a sortable per-labeler table.
// Data comes from a JSON block in the page; nothing is inserted as HTML.
(function () {
  "use strict";

  function drawTrends() {
    var canvas = document.getElementById("trend-chart");
    var source = document.getElementById("agreement-trends");
    if (!canvas || !source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var weeks = data.weeks || [];
    var labels = weeks.map(function (w) { return w.week; });
    function pct(key) {
      return weeks.map(function (w) { return w[key] == null ? null : w[key] * 100; });
    }
    function flat(value) { return labels.map(function () { return value * 100; }); }
    var volumeKey = weeks.length && "n_rankings" in weeks[0] ? "n_rankings" : "n_ratings";
    new Chart(canvas, {
      data: {
        labels: labels,
        datasets: [
          { type: "line", label: "All labelers", data: pct("pairwise_agreement"), borderColor: "#2856d8", spanGaps: true, yAxisID: "y" },
          { type: "line", label: "Training", data: pct("training"), borderColor: "#a76200", spanGaps: true, yAxisID: "y" },
          { type: "line", label: "Held-out", data: pct("held_out"), borderColor: "#1e7f4f", spanGaps: true, yAxisID: "y" },
          { type: "line", label: "Gold accuracy", data: pct("gold_accuracy"), borderColor: "#7b3fb5", spanGaps: true, yAxisID: "y" },
          { type: "line", label: "Paper, training (72.6%)", data: flat(data.reference.training), borderColor: "#a76200", borderDash: [6, 4], pointRadius: 0, yAxisID: "y" },
          { type: "line", label: "Paper, held-out (77.3%)", data: flat(data.reference.held_out), borderColor: "#1e7f4f", borderDash: [6, 4], pointRadius: 0, yAxisID: "y" },
          { type: "bar", label: volumeKey === "n_rankings" ? "Rankings" : "Ratings", data: weeks.map(function (w) { return w[volumeKey]; }), backgroundColor: "rgba(91,100,114,.18)", yAxisID: "volume" }
        ]
      },
      options: {
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { min: 0, max: 100, title: { display: true, text: "%" } },
          volume: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "labels" } }
        }
      }
    });
  }

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    if (!numeric) return cell.textContent.trim().toLowerCase();
    var raw = cell.getAttribute("data-value");
    return raw === null || raw === "" ? null : parseFloat(raw);
  }

  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      th.tabIndex = 0;
      function sort() {
        var numeric = th.getAttribute("data-type") !== "text";
        var descending = th.getAttribute("aria-sort") !== "descending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
          if (x === null && y === null) return 0;
          if (x === null) return 1;  // missing values last either way
          if (y === null) return -1;
          var order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }

  drawTrends();
  document.querySelectorAll("table.sortable").forEach(makeSortable);
})();
