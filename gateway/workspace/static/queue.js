// The queue page: on any live notice, re-fetch the server-rendered (autoescaped) rows with the
// current filters and swap them in, so new incidents and changes appear without a reload.
"use strict";
(function () {
  var body = document.getElementById("queue-rows");
  var form = document.getElementById("filters");
  var pending = null;
  var page = document.querySelector(".queue-page");
  var baseTitle = page ? page.dataset.title : document.title;
  var soundButton = document.getElementById("sound-toggle");
  var soundOn = false;
  try { soundOn = localStorage.getItem("cmw-sound") === "1"; } catch (e) { soundOn = false; }
  function unreadCount() { return body.querySelectorAll('tr[data-unread="1"]').length; }
  var lastUnread = unreadCount();
  function showSound() {
    if (!soundButton) { return; }
    soundButton.setAttribute("aria-pressed", soundOn ? "true" : "false");
    soundButton.textContent = "Sonido de avisos: " + (soundOn ? "sí" : "no");
  }
  function beep() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!soundOn || !Ctx) { return; }
    try {
      var ctx = new Ctx(), osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.18);
    } catch (e) { /* no audio device */ }
  }
  // The tab's title carries the unread count, so a background tab shows it too.
  function markUnread() {
    var n = unreadCount();
    document.title = (n ? "(" + n + ") " : "") + baseTitle;
    if (n > lastUnread) { beep(); }
    lastUnread = n;
  }
  if (soundButton) {
    showSound();
    soundButton.addEventListener("click", function () {
      soundOn = !soundOn;
      try { localStorage.setItem("cmw-sound", soundOn ? "1" : "0"); } catch (e) { /* blocked */ }
      showSound();
    });
  }
  function counts(header) {
    var data;
    try { data = JSON.parse(header || "{}"); } catch (e) { return; }
    Object.keys(data).forEach(function (view) {
      var el = document.querySelector('[data-count="' + view + '"]');
      if (el) { el.textContent = String(data[view]); }
    });
  }
  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    fetch("/agent/fragments/queue?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error(String(r.status)); }
        counts(r.headers.get("X-Queue-Counts"));
        return r.text();
      })
      .then(function (html) {
        var chosen = document.querySelector("#queue-rows tr.selected");
        var keep = chosen ? chosen.dataset.tracking : null;
        body.innerHTML = html;
        if (keep) {
          var again = body.querySelector('tr[data-tracking="' + keep + '"]');
          if (again) { again.classList.add("selected"); }
        }
        window.cmwTick();
        markUnread();
      })
      .catch(function () { /* the next notice retries */ });
  }
  markUnread();
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
