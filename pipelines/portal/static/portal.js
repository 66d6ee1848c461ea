/* Partner payouts portal: charts (Chart.js, served by the portal itself), table filters, confirmations.
   No inline script anywhere: the pages' Content-Security-Policy allows scripts from this site only. */
(function () {
  "use strict";

  var NAVY = "#1f4e79", GREY = "#6e7781";

  function money(value, digits, currency) {
    return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) +
      " " + currency;
  }

  function drawCharts() {
    if (!window.Chart) { return; }
    var canvases = document.querySelectorAll("canvas[data-chart]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      var spec;
      try { spec = JSON.parse(canvas.getAttribute("data-chart")); } catch (e) { return; }
      var datasets = spec.series.map(function (s) {
        var line = s.type === "line";
        return {
          type: s.type, label: s.label, data: s.data,
          backgroundColor: line ? GREY : NAVY, borderColor: line ? GREY : NAVY,
          borderWidth: line ? 2 : 0, pointRadius: line ? 3 : 0, tension: 0, order: line ? 0 : 1,
          maxBarThickness: 42
        };
      });
      new window.Chart(canvas, {
        data: { labels: spec.labels, datasets: datasets },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: {
            legend: { display: datasets.length > 1, position: "bottom", labels: { boxWidth: 12 } },
            tooltip: { callbacks: { label: function (ctx) {
              return ctx.dataset.label + ": " + money(ctx.parsed.y, spec.digits, spec.currency);
            } } }
          },
          scales: {
            x: { grid: { display: false } },
            y: { beginAtZero: true, ticks: { callback: function (v) {
              return Number(v).toLocaleString("en-US", { notation: "compact" });
            } } }
          }
        }
      });
    });
  }

  function filters() {
    var inputs = document.querySelectorAll("input[data-filter]");
    Array.prototype.forEach.call(inputs, function (input) {
      var table = document.getElementById(input.getAttribute("data-filter"));
      if (!table) { return; }
      input.addEventListener("input", function () {
        var needle = input.value.trim().toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) === -1;
        });
      });
    });
  }

  function confirms() {
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    filters();
    confirms();
  });
}());
