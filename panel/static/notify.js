/* poolwarden panel: the silence form shows only the fields of the chosen kind (once / every week).
 * Without this script both sets of fields stay visible and the "When" select decides. */
(function () {
  "use strict";

  function sync(form) {
    var select = form.querySelector("select[name=kind]");
    if (!select) return;
    form.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
      set.hidden = set.dataset.kind !== select.value;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("silence-form");
    if (!form) return;
    var select = form.querySelector("select[name=kind]");
    if (select) select.addEventListener("change", function () { sync(form); });
    sync(form);
  });
})();
