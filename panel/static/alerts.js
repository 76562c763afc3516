/* poolwarden panel: the alert pages' small behaviours (no inline script: the CSP forbids it).
 *
 * - On an alert's graph (drawn by charts.js), the episode is marked: a band from when the condition
 *   was first seen (pending) and from when it fired, to its resolution (or now). The figure carries
 *   the time span each range covers (data-spans), computed by the panel like the series API does.
 * - A form with data-confirm asks before it is sent (deleting a rule).
 * - In the rule editor, Enter in a field previews instead of saving.
 */
(function () {
  "use strict";

  function band(over, cls, from, to, span) {
    var el = over.querySelector(".alert-band." + cls);
    if (!el) {
      el = document.createElement("div");
      el.className = "alert-band " + cls;
      over.appendChild(el);
    }
    var width = span[1] - span[0];
    var left = Math.max(0, Math.min(1, (from - span[0]) / width));
    var right = Math.max(0, Math.min(1, (to - span[0]) / width));
    el.hidden = right <= left;
    el.style.left = (left * 100) + "%";
    el.style.width = ((right - left) * 100) + "%";
  }

  function markEpisode(figure) {
    var spans = JSON.parse(figure.dataset.spans);
    var section = figure.closest("[data-graphs]");
    function place() {
      var over = figure.querySelector(".u-over");
      var span = spans[section.dataset.currentRange];
      if (!over || !span) return;
      var pendingFrom = Number(figure.dataset.pendingFrom);
      var firingFrom = figure.dataset.firingFrom ? Number(figure.dataset.firingFrom) : null;
      var until = Number(figure.dataset.until);
      band(over, "pending", pendingFrom, firingFrom === null ? until : firingFrom, span);
      band(over, "firing", firingFrom === null ? until : firingFrom, until, span);
    }
    // charts.js sets data-points after each draw; the plot area (.u-over) exists from then on.
    new MutationObserver(place).observe(figure, { attributes: true, attributeFilter: ["data-points"] });
    place();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("figure.graph[data-spans]").forEach(markEpisode);

    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });

    var editor = document.getElementById("rule-form");
    var preview = editor && editor.querySelector("button[value=preview]");
    if (!preview) return;
    editor.addEventListener("keydown", function (event) {
      var target = event.target;
      if (event.key === "Enter" && target.tagName === "INPUT" && target.type !== "checkbox") {
        event.preventDefault();
        preview.click();
      }
    });
  });
})();
