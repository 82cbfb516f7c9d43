// Postpone dashboard: live regions and confirmations. No build step, no dependency.
// Every element with data-live and an id is refreshed every 2 s from the same URL, unless
// the user is busy in it (a checked box, a focused field) or the tab is hidden; the page
// is not reloaded, so the scroll position stays.
(function () {
  "use strict";
  var PERIOD = 2000;
  function busy(region) {
    if (region.querySelector("input[type=checkbox]:checked")) return true;
    var active = document.activeElement;
    return !!(active && region.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  }
  function refresh() {
    if (document.hidden) return;
    var regions = document.querySelectorAll("[data-live][id]");
    if (!regions.length) return;
    for (var i = 0; i < regions.length; i++) if (busy(regions[i])) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Postpone-Live": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        for (var i = 0; i < regions.length; i++) {
          var fresh = doc.getElementById(regions[i].id);
          if (fresh && fresh.innerHTML !== regions[i].innerHTML) regions[i].innerHTML = fresh.innerHTML;
        }
      })
      .catch(function () {});
  }
  window.setInterval(refresh, PERIOD);
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) { event.preventDefault(); return; }
    var confirmed = document.createElement("input");
    confirmed.type = "hidden"; confirmed.name = "confirmed"; confirmed.value = "1";
    form.appendChild(confirmed);
  });
  document.addEventListener("change", function (event) {
    if (event.target.id !== "select-all") return;
    var boxes = document.querySelectorAll("input[name=ids]");
    for (var i = 0; i < boxes.length; i++) boxes[i].checked = event.target.checked;
  });
})();
