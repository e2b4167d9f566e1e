// The incident page: when a live notice names this incident, re-fetch its conversation (server
// rendered and autoescaped) and say that it changed, without losing what the agent is typing.
"use strict";
(function () {
  var section = document.querySelector("[data-tracking]");
  var target = document.getElementById("timeline");
  var banner = document.getElementById("live-changed");
  if (!section || !target) { return; }
  var tracking = section.dataset.tracking;
  document.addEventListener("cmw-notice", function (ev) {
    var resync = ev.detail.type === "resync";  // changes may have been missed: re-read
    if (ev.detail.tracking !== tracking && !resync) { return; }
    fetch("/agent/fragments/incidents/" + encodeURIComponent(tracking), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) { target.innerHTML = html; window.cmwTick(); })
      .catch(function () { /* escalated away or gone: the banner still says it changed */ });
    if (banner && !resync && ev.detail.event !== "message") { banner.hidden = false; }
  });
})();
