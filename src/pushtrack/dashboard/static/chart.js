// pushtrack dashboard: a message's counters over time (uPlot).
(function () {
  "use strict";
  var el = document.getElementById("chart");
  if (!el) return;
  var names = ["sends", "deliveries", "opens", "errors"];
  var colors = ["#4466cc", "#2a9d55", "#d08a00", "#cc3344"];
  fetch(el.dataset.series, { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (s) {
      document.getElementById("chart-interval").textContent =
        s.interval === "minute" ? "per minute" : "per hour";
      if (!s.t.length) {
        el.textContent = "Nothing counted yet.";
        el.dataset.ready = "empty";
        return;
      }
      var data = [s.t].concat(names.map(function (n) { return s[n]; }));
      var series = [{}].concat(names.map(function (n, i) {
        return { label: n, stroke: colors[i], width: 2, points: { show: s.t.length < 60 } };
      }));
      var width = function () { return Math.max(280, el.clientWidth); };
      var step = s.interval === "minute" ? 60 : 3600;
      var x = {
        time: true,
        // one bucket so far: show the minutes (or hours) around it, not a range of years
        range: function (u, min, max) {
          var first = s.t[0], last = s.t[s.t.length - 1];
          return first === last ? [first - step, last + 5 * step] : [min, max];
        },
      };
      var u = new uPlot({ width: width(), height: 260, series: series, scales: { x: x } }, data, el);
      window.ptChart = u;
      el.dataset.ready = "drawn";
      window.addEventListener("resize", function () { u.setSize({ width: width(), height: 260 }); });
    })
    .catch(function () { el.textContent = "The chart could not be loaded."; el.dataset.ready = "error"; });
})();
