/* CallMyWay chat widget: <script src="https://GATEWAY/chat/widget.js" data-lang="es|en"
 * data-country="CR" data-position="right|left" async></script> on any page.
 * Adds a launcher button and a panel holding an <iframe> of GATEWAY/chat, so the chat runs on
 * the gateway's origin: its token lives in the gateway's storage (not the host page's), its
 * styles cannot clash, and the host page never handles customer text. No build step. */
(function () {
  "use strict";
  if (window.__cmwChatWidget) return;
  window.__cmwChatWidget = true;
  var TEXTS = /*__TEXTS__*/null;
  var script = document.currentScript;
  if (!script) return;
  var origin = new URL(script.src, location.href).origin;
  var lang = script.getAttribute("data-lang") === "en" ? "en" : "es";
  var explicitLang = script.hasAttribute("data-lang");
  var country = (script.getAttribute("data-country") || "").toUpperCase().replace(/[^A-Z]/g, "").slice(0, 2);
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";
  var t = TEXTS[lang];
  var OPEN_KEY = "cmw-widget-open";
  var frame = null;
  // The chat frame keeps its visitor token and unsent messages here, in this site's storage:
  // browsers block or partition storage inside third-party frames.
  var STORE = "cmw-chat:";
  function stored(key) {
    try { return JSON.parse(window.localStorage.getItem(STORE + key)); } catch (e) { return null; }
  }

  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = origin + "/chat/static/widget.css";
  document.head.appendChild(css);

  var button = document.createElement("button");
  button.type = "button";
  button.id = "cmw-launcher";
  button.className = "cmw-launcher cmw-" + side;
  button.setAttribute("aria-label", t.launcher_open);
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", "cmw-panel");
  button.textContent = t.launcher_label;
  // The unread count sits on the launcher's corner, outside its text.
  var badge = document.createElement("span");
  badge.className = "cmw-badge";
  badge.setAttribute("aria-hidden", "true");
  badge.hidden = true;
  button.appendChild(badge);
  var unread = 0;
  function showUnread() {
    badge.hidden = unread === 0;
    badge.textContent = unread > 9 ? "9+" : String(unread);
    button.classList.toggle("cmw-unread", unread > 0);
    var label = isOpen() ? t.launcher_close : t.launcher_open;
    button.setAttribute("aria-label", unread ? label + " — " + t.unread.replace("{n}", String(unread)) : label);
  }

  var panel = document.createElement("div");
  panel.id = "cmw-panel";
  panel.className = "cmw-panel cmw-" + side;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", t.panel_title);
  panel.hidden = true;

  function isOpen() { return !panel.hidden; }
  function remember(open) {
    try { window.sessionStorage.setItem(OPEN_KEY, open ? "1" : "0"); } catch (e) { /* blocked */ }
  }
  function ensureFrame() {
    if (frame) return;
    var src = origin + "/chat?embed=1&host=" + encodeURIComponent(location.origin) + (explicitLang ? "&lang=" + lang : "") +
      (country ? "&country=" + country : "");
    frame = document.createElement("iframe");
    frame.id = "cmw-frame";
    frame.title = t.panel_title;
    frame.src = src;
    frame.addEventListener("load", function () { if (isOpen()) focusFrame(); });
    panel.appendChild(frame);
  }
  function focusFrame() {
    frame.focus();
    frame.contentWindow.postMessage({ type: "cmw-focus" }, origin);
  }
  function open() {
    ensureFrame();
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    unread = 0;
    showUnread();
    remember(true);
    focusFrame();
  }
  function close() {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
    showUnread();
    remember(false);
    button.focus();
  }
  button.addEventListener("click", function () { if (isOpen()) close(); else open(); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && isOpen()) close();
  });
  window.addEventListener("message", function (event) {
    // Only our own frame, from the gateway's origin, may drive the panel.
    if (!frame || event.origin !== origin || event.source !== frame.contentWindow) return;
    var type = event.data && event.data.type;
    if (type === "cmw-ready") {
      frame.contentWindow.postMessage({ type: "cmw-init", saved: { token: stored("token"), pending: stored("pending") } }, origin);
    }
    if (type === "cmw-store" && (event.data.key === "token" || event.data.key === "pending")) {
      try { window.localStorage.setItem(STORE + event.data.key, JSON.stringify(event.data.value)); } catch (e) { /* blocked */ }
    }
    if (type === "cmw-close") close();
    if (type === "cmw-unread" && !isOpen()) {
      unread += 1;
      showUnread();
    }
  });

  function mount() {
    document.body.appendChild(panel);
    document.body.appendChild(button);
    var wasOpen = false;
    try { wasOpen = window.sessionStorage.getItem(OPEN_KEY) === "1"; } catch (e) { /* blocked */ }
    if (wasOpen) open();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
