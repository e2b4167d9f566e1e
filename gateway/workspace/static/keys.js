// Keyboard shortcuts of the workspace (listed on "?"): j/k move through the queue, Enter opens
// the selected incident, r goes to the reply box (on the queue: opens the selected incident
// there), "/" goes to the search box. Keys typed into a field are never taken.
"use strict";
(function () {
  var dialog = document.getElementById("shortcuts");
  var opener = document.getElementById("show-shortcuts");
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#queue-rows tr[data-tracking]")); }
  function selected() { return document.querySelector("#queue-rows tr.selected"); }
  function select(step) {
    var all = rows();
    if (!all.length) { return; }
    var at = all.indexOf(selected());
    var next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + step))];
    all.forEach(function (tr) { tr.classList.remove("selected"); tr.removeAttribute("aria-selected"); });
    next.classList.add("selected");
    next.setAttribute("aria-selected", "true");
    var link = next.querySelector("a");
    if (link) { link.focus(); }
  }
  function showHelp() {
    if (!dialog) { return; }
    if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
  }
  if (opener) { opener.addEventListener("click", showHelp); }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(document.activeElement)) { return; }
    if (dialog && dialog.open) { return; }  // Esc closes it (the browser's own dialog)
    var reply = document.getElementById("reply-text");
    if (ev.key === "?") { ev.preventDefault(); showHelp(); return; }
    if (ev.key === "/") {
      var search = document.getElementById("search");
      if (search) { ev.preventDefault(); search.focus(); }
      return;
    }
    if (ev.key === "j" || ev.key === "k") {
      if (rows().length) { ev.preventDefault(); select(ev.key === "j" ? 1 : -1); }
      return;
    }
    if (ev.key === "Enter" && selected() && document.activeElement === document.body) {
      location.href = selected().querySelector("a").href;
      return;
    }
    if (ev.key === "r") {
      if (reply) { ev.preventDefault(); reply.focus(); return; }
      var row = selected();
      if (row) { location.href = row.querySelector("a").href + "#responder"; }
    }
  });
})();
