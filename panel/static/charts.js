/* poolwarden panel: time-series graphs drawn with uPlot (vendored in /static/vendor/uplot).
 *
 * A page declares its graphs in HTML:
 *   <section data-graphs data-series-url="/api/hosts/<name>/series">
 *     <button data-range="1h">…  (the range selector; the chosen range is kept in the URL's ?range=)
 *     <figure class="graph" data-names="metric_a,metric_b" data-labels="pool=ergo" data-format="bytes">
 * Each graph fetches its series (the API picks raw or rollup data for the range, ~700 points),
 * draws one line per series and refreshes while the page is visible: every 15 s for the last
 * hour, every minute for longer ranges.
 */
(function () {
  "use strict";

  var COLORS = ["#4fa3e0", "#3fb27f", "#e0a33a", "#c678dd", "#e5534b", "#56b6c2", "#d19a66", "#98c379",
                "#61afef", "#be5046"];
  var RANGES = ["1h", "24h", "7d", "30d"];
  var FAST_MS = 15000;
  var SLOW_MS = 60000;

  function fmt(value, kind) {
    if (window.poolwardenFormat) return window.poolwardenFormat(value, kind);
    return value === null || value === undefined ? "\u2014" : String(value);
  }

  function seriesLabel(item, multipleNames, legendKeys) {
    var keys = legendKeys || Object.keys(item.labels || {}).sort();
    var parts = keys.filter(function (k) { return item.labels[k] !== undefined; })
      .map(function (k) { return item.labels[k]; });
    var short = item.name.replace(/^poolwarden_/, "").replace(/_(bytes|percent|hps|seconds|blocks)$/, "");
    if (!parts.length) return short.replace(/_/g, " ");
    return multipleNames ? short.replace(/_/g, " ") + " " + parts.join(" ") : parts.join(" ");
  }

  function currentRange() {
    var fromUrl = new URLSearchParams(window.location.search).get("range");
    if (RANGES.indexOf(fromUrl) >= 0) return fromUrl;
    var stored = window.localStorage ? window.localStorage.getItem("pw-range") : null;
    return RANGES.indexOf(stored) >= 0 ? stored : "24h";
  }

  function Graph(figure, baseUrl) {
    this.figure = figure;
    this.baseUrl = baseUrl;
    this.body = figure.querySelector(".graph-body");
    this.empty = figure.querySelector(".graph-empty");
    this.format = figure.dataset.format || "decimal";
    this.legend = figure.dataset.legend ? figure.dataset.legend.split(",") : null;
    this.plot = null;
    this.shape = "";
  }

  Graph.prototype.url = function (range) {
    var params = new URLSearchParams();
    this.figure.dataset.names.split(",").forEach(function (n) { params.append("name", n); });
    if (this.figure.dataset.labels) params.set("labels", this.figure.dataset.labels);
    params.set("range", range);
    return this.baseUrl + "?" + params.toString();
  };

  Graph.prototype.load = function (range) {
    var self = this;
    return window.poolwardenGetJSON(this.url(range))  // panel.js: same 401 and error handling as the numbers
      .then(function (body) { self.draw(body); })
      .catch(function (error) {
        self.figure.classList.add("failed");
        self.empty.textContent = "Could not load: " + error.message;
        self.empty.hidden = false;
      });
  };

  Graph.prototype.draw = function (body) {
    this.figure.classList.remove("failed");
    this.figure.dataset.resolution = body.resolution;
    this.figure.dataset.points = String(body.timestamps.length);
    var hasData = body.series.some(function (s) { return s.values.some(function (v) { return v !== null; }); });
    this.empty.textContent = "No data in this range";
    this.empty.hidden = hasData;
    this.body.hidden = !hasData;
    if (!hasData) return;
    var names = {};
    body.series.forEach(function (s) { names[s.name] = true; });
    var multipleNames = Object.keys(names).length > 1;
    var legend = this.legend;
    var shape = body.series.map(function (s) { return seriesLabel(s, multipleNames, legend); }).join("|");
    var data = [body.timestamps].concat(body.series.map(function (s) { return s.values; }));
    var span = { min: Date.parse(body.from) / 1000, max: Date.parse(body.to) / 1000 };
    if (this.plot && shape === this.shape) {
      this.plot.setData(data, false);
      this.plot.setScale("x", span);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.shape = shape;
    var format = this.format;
    var fromZero = this.figure.dataset.zero !== "no";  // heights and difficulty: scale to the data
    var series = [{}].concat(body.series.map(function (s, i) {
      return {
        label: seriesLabel(s, multipleNames, legend),
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: false,
        value: function (u, v) { return v === null || v === undefined ? "\u2014" : fmt(v, format); }
      };
    }));
    var axis = { stroke: "#8494a5", grid: { stroke: "#26313d", width: 1 }, ticks: { stroke: "#26313d", width: 1 },
                 font: "11px system-ui, sans-serif" };
    this.plot = new window.uPlot({
      width: Math.max(200, this.body.clientWidth),
      height: 170,
      series: series,
      scales: { x: { time: true, auto: false, range: function () { return [span.min, span.max]; } },
                y: fromZero ? { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.08 : 1]; } }
                  : { auto: true } },
      axes: [
        axis,
        Object.assign({}, axis, { size: 86, values: function (u, splits) {
          return splits.map(function (v) { return fmt(v, format); });
        } })
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } }
    }, data, this.body);
  };

  Graph.prototype.resize = function () {
    if (this.plot) this.plot.setSize({ width: Math.max(200, this.body.clientWidth), height: 170 });
  };

  function setup(section) {
    var baseUrl = section.dataset.seriesUrl;
    var graphs = Array.prototype.map.call(section.querySelectorAll("figure.graph"), function (f) {
      return new Graph(f, baseUrl);
    });
    var buttons = section.querySelectorAll("[data-range]");
    var range = currentRange();
    var timer = null;

    function loadAll() {
      if (document.hidden) return;
      graphs.forEach(function (g) { g.load(range); });
    }

    function schedule() {
      if (timer) window.clearInterval(timer);
      timer = window.setInterval(loadAll, range === "1h" ? FAST_MS : SLOW_MS);
    }

    function choose(next) {
      range = next;
      section.dataset.currentRange = range;
      buttons.forEach(function (b) { b.classList.toggle("active", b.dataset.range === range); });
      if (window.localStorage) window.localStorage.setItem("pw-range", range);
      var url = new URL(window.location.href);
      url.searchParams.set("range", range);
      window.history.replaceState(null, "", url.toString());
      loadAll();
      schedule();
    }

    buttons.forEach(function (b) {
      b.addEventListener("click", function () { choose(b.dataset.range); });
    });
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(function () { graphs.forEach(function (g) { g.resize(); }); }, 150);
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden) loadAll(); });
    choose(range);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.uPlot) return;
    document.querySelectorAll("[data-graphs]").forEach(setup);
  });
})();
