(function () {
  "use strict";
  var select = document.getElementById("focus-filter");
  var status = document.getElementById("filter-status");
  var newest = document.getElementById("timeline-newest-first");
  var body = document.getElementById("timeline-body");

  function applyFilter() {
    var focus = select ? select.value : "";
    var shown = 0, total = 0;
    document.querySelectorAll("[data-focus]").forEach(function (el) {
      var f = el.getAttribute("data-focus") || "";
      // an item ID also matches its sub-steps (ID.F1); a sub-step matches only itself
      var match = !focus || f === focus || f.indexOf(focus + ".") === 0;
      el.hidden = !match;
      total += 1;
      if (match) { shown += 1; }
    });
    document.querySelectorAll(".plan-item").forEach(function (el) {
      el.classList.toggle("selected", !!focus && el.getAttribute("data-item-id") === focus.split(".")[0]);
    });
    if (status) {
      status.textContent = focus ? shown + " of " + total + " entries and runs shown" : "";
    }
  }

  function applyOrder() {
    if (!body || !newest) { return; }
    var rows = Array.prototype.slice.call(body.querySelectorAll("tr.entry"));
    rows.sort(function (a, b) {
      var ka = a.getAttribute("data-ts"), kb = b.getAttribute("data-ts");
      var cmp = ka < kb ? -1 : (ka > kb ? 1 : 0);
      return newest.checked ? -cmp : cmp;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  if (select) { select.addEventListener("change", applyFilter); }
  if (newest) { newest.addEventListener("change", applyOrder); }
  applyFilter();
})();
