/* Draws the control room's charts with the vendored Chart.js. Each chart is a
   <canvas data-chart="kind" data-source="id of a json_script element" [data-key="…"]>;
   the numbers are computed on the server, this file only draws them. */
(function () {
  "use strict";
  var PALETTE = ["#417690", "#e0a03c", "#5b9a68", "#b5525c", "#7d6ab0", "#3c9ab2",
                 "#c47e3a", "#8a8f35", "#a0568f", "#5c6f7d"];
  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD",
                                             minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var integer = new Intl.NumberFormat("en-US");

  function money(value) { return usd.format(value); }

  function moneyTooltip(context) {
    var value = context.parsed.y !== undefined && context.parsed.y !== null ? context.parsed.y : context.parsed;
    return (context.dataset.label ? context.dataset.label + ": " : "") + money(value);
  }

  var KINDS = {
    "daily-spend": function (data) {
      return {
        type: "bar",
        data: { labels: data.labels, datasets: [{ label: "Spend", data: data.cost,
                                                  backgroundColor: PALETTE[0] }] },
        options: {
          plugins: { legend: { display: false }, tooltip: { callbacks: { label: moneyTooltip } } },
          scales: { y: { beginAtZero: true, ticks: { callback: money } },
                    x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 } } },
        },
      };
    },
    "share": function (data) {
      return {
        type: "doughnut",
        data: { labels: data.labels, datasets: [{ data: data.cost,
                backgroundColor: data.labels.map(function (_, i) { return PALETTE[i % PALETTE.length]; }) }] },
        options: {
          plugins: {
            legend: { position: "right" },
            tooltip: { callbacks: { label: function (context) {
              return context.label + ": " + money(context.parsed);
            } } },
          },
        },
      };
    },
    "sparkline": function (data) {
      return {
        type: "line",
        data: { labels: data.labels, datasets: [{ label: "Spend", data: data.cost, borderColor: PALETTE[0],
                backgroundColor: "rgba(65, 118, 144, 0.2)", fill: true, pointRadius: 0, tension: 0.3 }] },
        options: {
          plugins: { legend: { display: false }, tooltip: { callbacks: { label: moneyTooltip } } },
          scales: { x: { display: false }, y: { display: false, beginAtZero: true } },
        },
      };
    },
    "monthly-spend": function (data) {
      return KINDS["daily-spend"](data);
    },
    "timeline": function (data) {
      return {
        type: "scatter",
        data: { datasets: data.series.map(function (series, i) {
          return { label: series.label, data: series.points, backgroundColor: PALETTE[i % PALETTE.length] };
        }) },
        options: {
          plugins: { tooltip: { callbacks: { label: function (context) {
            var point = context.raw;
            return context.dataset.label + " · " + point.model + " · " + point.status + " · " +
              integer.format(point.y) + " ms at +" + point.x + " s";
          } } } },
          scales: {
            x: { title: { display: true, text: "seconds since the session began" }, beginAtZero: true },
            y: { title: { display: true, text: "latency (ms)" }, beginAtZero: true },
          },
        },
      };
    },
  };

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.source);
    var build = KINDS[canvas.dataset.chart];
    if (!source || !build || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    if (canvas.dataset.key) {
      data = data[canvas.dataset.key];
    }
    var config = build(data);
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false },
                                   config.options);
    new window.Chart(canvas, config);
    canvas.dataset.drawn = "1";
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
