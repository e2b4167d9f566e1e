// Live notices for the agent pages: one WebSocket to /agent/ws (session cookie + CSRF token),
// re-opened with backoff; each notice is re-dispatched as a "cmw-notice" DOM event. Also runs
// the SLA countdowns, corrected by the server's clock at render time. No innerHTML of data here.
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var nowMeta = document.querySelector('meta[name="server-now"]');
  var skew = nowMeta ? Date.parse(nowMeta.content) - Date.now() : 0;
  var atRiskTable = document.querySelector("[data-at-risk]");
  var atRisk = atRiskTable ? Number(atRiskTable.dataset.atRisk) * 1000 : 15 * 60 * 1000;

  function span(ms) {
    var minutes = Math.floor(ms / 60000);
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours >= 24) { return Math.floor(hours / 24) + " d " + (hours % 24) + " h"; }
    if (hours) { return hours + " h " + String(minutes).padStart(2, "0") + " min"; }
    return minutes + " min";
  }
  // Overdue reads "vencido hace 3 min" (never "-0 min"); a wait is never negative.
  function fmt(ms) {
    return ms < 0 ? "vencido hace " + span(Math.max(-ms, 60000)) : span(ms);
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var left = Date.parse(el.dataset.due) - now;
      el.textContent = fmt(left);
      el.classList.toggle("vencido", left < 0);
      el.classList.toggle("riesgo", left >= 0 && left <= atRisk);
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = span(Math.max(0, now - Date.parse(el.dataset.since)));
    });
  }
  window.cmwTick = tick;
  tick();
  setInterval(tick, 1000);

  if (!meta) { return; }
  var delay = 1000;
  var status = document.getElementById("live-status");
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/agent/ws?csrf=" + encodeURIComponent(meta.content));
    ws.onopen = function () { delay = 1000; if (status) { status.hidden = false; } };
    ws.onmessage = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      document.dispatchEvent(new CustomEvent("cmw-notice", { detail: data }));
    };
    ws.onclose = function () {
      if (status) { status.hidden = true; }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
