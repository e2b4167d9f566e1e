// The incident page's composer and forms: keeps the agent's place across a submit (the page
// comes back scrolled where it was), shows the newest message, inserts canned replies (filled
// in by the server; set as text, never HTML) and tells a web chat customer the agent is typing.
"use strict";
(function () {
  var section = document.querySelector("section.incident[data-tracking]");
  if (!section) { return; }
  var tracking = section.dataset.tracking;
  var KEY = "cmw-place:" + tracking;
  var conversation = document.getElementById("conversation");
  var reply = document.getElementById("reply-text");
  var meta = document.querySelector('meta[name="csrf-token"]');

  function toBottom() { if (conversation) { conversation.scrollTop = conversation.scrollHeight; } }

  // Keep the place: remember the scroll positions and the form used, restore them after the
  // post/redirect/get round trip (only for this incident, only once).
  document.querySelectorAll("form.keep-place").forEach(function (form) {
    form.addEventListener("submit", function () {
      try {
        sessionStorage.setItem(KEY, JSON.stringify({ y: window.scrollY, form: form.id || null }));
      } catch (e) { /* storage blocked: the page opens at the top */ }
    });
  });
  var place = null;
  try { place = JSON.parse(sessionStorage.getItem(KEY)); sessionStorage.removeItem(KEY); } catch (e) { place = null; }
  toBottom();
  if (place && /[?&]hecho=/.test(location.search)) {
    window.scrollTo(0, place.y || 0);
    if (place.form === "form-reply" && reply) { reply.focus({ preventScroll: true }); }
  }
  if (location.hash === "#responder" && reply) { reply.focus(); }
  var done = document.getElementById("action-done");
  if (done) { setTimeout(function () { done.hidden = true; }, 8000); }
  // The live refresh replaces the timeline: keep showing the newest message.
  var timeline = document.getElementById("timeline");
  if (timeline && window.MutationObserver) {
    new MutationObserver(toBottom).observe(timeline, { childList: true });
  }

  // Canned replies: the server filled in the placeholders for this incident.
  var data = document.getElementById("canned-data");
  var pick = document.getElementById("canned-pick");
  var insert = document.getElementById("canned-insert");
  if (data && pick && insert && reply) {
    var canned = JSON.parse(data.textContent);
    insert.addEventListener("click", function () {
      var chosen = canned.filter(function (c) { return String(c.id) === pick.value; })[0];
      if (!chosen) { pick.focus(); return; }
      var start = reply.selectionStart, end = reply.selectionEnd, value = reply.value;
      reply.value = value.slice(0, start) + chosen.text + value.slice(end);
      reply.focus();
      reply.setSelectionRange(start + chosen.text.length, start + chosen.text.length);
      pick.value = "";
    });
  }

  // Typing signal, at most every 3 s while the agent writes.
  var form = document.getElementById("form-reply");
  var last = 0;
  if (form && reply && meta && form.dataset.typing) {
    reply.addEventListener("input", function () {
      var now = Date.now();
      if (now - last < 3000 || !reply.value.trim()) { return; }
      last = now;
      fetch(form.dataset.typing, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": meta.content }
      }).catch(function () { /* only a courtesy */ });
    });
  }
})();
