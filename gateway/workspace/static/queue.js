// The queue page: on any live notice, re-fetch the server-rendered (autoescaped) rows with the
// current filters and swap them in, so new incidents and changes appear without a reload.
"use strict";
(function () {
  var body = document.getElementById("queue-rows");
  var form = document.getElementById("filters");
  var pending = null;
  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    fetch("/agent/fragments/queue?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) { body.innerHTML = html; window.cmwTick(); })
      .catch(function () { /* the next notice retries */ });
  }
  var escalation = document.getElementById("escalation-notice");
  document.addEventListener("cmw-notice", function (ev) {
    if (ev.detail.type !== "incident" && ev.detail.type !== "resync") { return; }
    var d = ev.detail;
    if (d.event === "escalated" && escalation && d.level === escalation.dataset.level &&
        (!escalation.dataset.team || d.team === escalation.dataset.team)) {
      escalation.textContent = "Escalado a " + (d.team ? "su equipo (" + d.team + ")" : d.level) +
        ": " + d.tracking;
      escalation.hidden = false;
    }
    clearTimeout(pending);
    pending = setTimeout(refresh, 150);
  });
  document.querySelectorAll("#filters select").forEach(function (el) {
    el.addEventListener("change", function () { form.submit(); });
  });
})();
