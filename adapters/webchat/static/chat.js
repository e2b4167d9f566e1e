/* CallMyWay web chat page (GET /chat, also the widget's frame). Plain ES5+, no build step.
 * Talks CONTRACT "WebSocket chat" on /chat/ws. Keeps its signed visitor token and the frames
 * not yet acknowledged in localStorage, resends them (same client_id) after a reconnect.
 * Everything shown is set with textContent: no customer or agent text is ever parsed as HTML. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("cmw-config").textContent);
  var T = cfg.texts;
  var $ = function (id) { return document.getElementById(id); };
  var KEY = "cmw-chat:";
  var wantFocus = false;
  var ws = null, synced = false, retry = 0, lines = {}, tracking = null, country = cfg.country;
  // Storage: the page's own localStorage; inside the widget, the host page's (through
  // postMessage), because browsers block or wipe storage in third-party frames.
  var host = cfg.embedded && cfg.host && window.parent !== window ? cfg.host : null;
  var mem = {};
  var pending = [];

  function load(name, fallback) { return mem[name] !== undefined && mem[name] !== null ? mem[name] : fallback; }
  function save(name, value) {
    mem[name] = value;
    if (host) { window.parent.postMessage({ type: "cmw-store", key: name, value: value }, host); return; }
    try { window.localStorage.setItem(KEY + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function boot(saved) {
    mem = saved || {};
    pending = load("pending", []);
    connect();
  }
  function newId() {
    var a = new Uint8Array(12); window.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function status(text) { $("cmw-status").textContent = text; }
  function send(frame) {
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  // -- connection ----------------------------------------------------------------------------
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    status(retry ? T.reconnecting : T.connecting);
    synced = false;
    ws = new WebSocket(scheme + location.host + "/chat/ws");
    ws.onopen = function () {
      var hello = { type: "hello", token: load("token", null) };
      if (cfg.lang_explicit) hello.lang = cfg.lang;
      if (country) hello.country = country;
      send(hello);
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      var handler = handlers[frame.type];
      if (handler) handler(frame);
    };
    ws.onclose = function () {
      ws = null; synced = false;
      status(T.reconnecting);
      retry = Math.min(retry + 1, 6);
      // Capped exponential backoff with jitter, so a restarted gateway is not stampeded.
      window.setTimeout(connect, (500 * Math.pow(2, retry - 1)) * (0.5 + Math.random() / 2));
    };
  }

  function flush() {
    pending.forEach(function (item) { send(item.frame); });
  }

  var handlers = {
    welcome: function (f) {
      retry = 0;
      if (f.token !== load("token", null)) {
        save("token", f.token);
        if (!f.resumed) { $("cmw-log").textContent = ""; }
      }
      lines = f.lines || {};
      tracking = f.tracking || null;
      status(T.connected);
      if (tracking) showConversation(); else showForm();
      focusFirst();
      showHours(tracking ? f : lines[$("cmw-country").value]);
    },
    synced: function () {
      synced = true;
      var startPending = pending.some(function (p) { return p.frame.type === "start"; });
      if (!tracking && startPending) showConversation();
      pending.forEach(function (p) {  // after a reload: show what is still to be saved
        if (!bubble(p.frame.client_id)) {
          $("cmw-log").appendChild(makeBubble("customer", p.frame.text, null, p.frame.client_id));
        }
      });
      flush();
    },
    message: function (f) { addMessage(f); if (f.from === "agent") notifyParent(); },
    ack: function (f) {
      pending = pending.filter(function (p) { return p.frame.client_id !== f.client_id; });
      save("pending", pending);
      var li = bubble(f.client_id);
      if (li) { li.setAttribute("data-id", String(f.id)); markSaved(li); }
    },
    ticket: function (f) {
      tracking = f.tracking;
      showConversation();
      if (f.notice) addNotice(f.notice);
      if (!f.after_hours) $("cmw-hours").hidden = true;
    },
    error: function (f) {
      var retryable = f.code === "not_saved" || f.code === "unavailable" || f.code === "hello_first";
      if (f.client_id && !retryable) {
        var dropped = pending.filter(function (p) { return p.frame.client_id === f.client_id; });
        pending = pending.filter(function (p) { return p.frame.client_id !== f.client_id; });
        save("pending", pending);
        var li = bubble(f.client_id);
        if (li) li.parentNode.removeChild(li);
        if (dropped.length && dropped[0].frame.type === "start") { showForm(); }
      }
      var target = $("cmw-form").hidden ? $("cmw-error") : $("cmw-form-error");
      target.textContent = f.message;
      $("cmw-start").disabled = false;
      if (f.client_id && retryable) {
        window.setTimeout(function () { if (synced) flush(); }, 2000);
      }
    }
  };

  // -- rendering (textContent only) ----------------------------------------------------------
  function bubble(clientId) {
    if (!clientId) return null;
    var items = $("cmw-log").children;
    for (var i = 0; i < items.length; i++) {
      if (items[i].getAttribute("data-client-id") === clientId) return items[i];
    }
    return null;
  }
  function markSaved(li) {
    li.classList.remove("cmw-pending");
    li.querySelector(".cmw-state").textContent = T.saved;
  }
  function addMessage(f) {
    var log = $("cmw-log");
    if (f.id != null && log.querySelector('li[data-id="' + Number(f.id) + '"]')) return;
    var li = bubble(f.client_id);
    if (li) { li.setAttribute("data-id", String(f.id)); markSaved(li); return; }
    li = makeBubble(f.from, f.text, f.at, f.client_id);
    if (f.id != null) li.setAttribute("data-id", String(f.id));
    markSaved(li);
    // Keep stored order (ids grow with commit order); unsaved bubbles stay at the end.
    var before = null, items = log.children;
    for (var i = 0; i < items.length; i++) {
      var id = items[i].getAttribute("data-id");
      if (f.id != null && (id === null || Number(id) > Number(f.id))) { before = items[i]; break; }
    }
    log.insertBefore(li, before);
    li.scrollIntoView({ block: "nearest" });
  }
  function makeBubble(from, text, at, clientId) {
    var li = document.createElement("li");
    li.className = "cmw-msg cmw-" + (from === "agent" ? "agent" : "customer") + " cmw-pending";
    if (clientId) li.setAttribute("data-client-id", clientId);
    var who = document.createElement("span"); who.className = "cmw-who";
    who.textContent = from === "agent" ? T.agent : T.you;
    var body = document.createElement("p"); body.className = "cmw-text"; body.textContent = text;
    var meta = document.createElement("span"); meta.className = "cmw-meta";
    var when = document.createElement("time");
    var d = at ? new Date(at) : new Date();
    when.setAttribute("datetime", d.toISOString());
    when.textContent = d.toLocaleTimeString(cfg.lang, { hour: "2-digit", minute: "2-digit" });
    var state = document.createElement("span"); state.className = "cmw-state"; state.textContent = T.pending;
    meta.appendChild(when); meta.appendChild(state);
    li.appendChild(who); li.appendChild(body); li.appendChild(meta);
    return li;
  }
  function addNotice(text) {
    var li = document.createElement("li"); li.className = "cmw-notice"; li.textContent = text;
    $("cmw-log").appendChild(li);
  }
  function showHours(status) {
    var box = $("cmw-hours");
    box.hidden = !(status && status.open === false && status.notice);
    box.textContent = box.hidden ? "" : status.notice;
  }
  function showForm() {
    $("cmw-form").hidden = false; $("cmw-conversation").hidden = true; $("cmw-ticket").hidden = true;
  }
  function showConversation() {
    $("cmw-form").hidden = true; $("cmw-conversation").hidden = false;
    if (tracking) { $("cmw-tracking").textContent = tracking; $("cmw-ticket").hidden = false; }
  }
  function queue(frame, text) {
    pending.push({ frame: frame }); save("pending", pending);
    $("cmw-log").appendChild(makeBubble("customer", text, null, frame.client_id));
    if (synced) send(frame);
  }
  function notifyParent() {
    if (cfg.embedded && window.parent !== window) window.parent.postMessage({ type: "cmw-unread" }, "*");
  }

  // -- the pre-chat form and the composer ----------------------------------------------------
  function radio(name) {
    var el = document.querySelector('input[name="' + name + '"]:checked');
    return el ? el.value : null;
  }
  $("cmw-country").addEventListener("change", function () {
    country = this.value || null; showHours(lines[this.value]);
  });
  $("cmw-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var v = {
      name: $("cmw-name").value.trim(), email: $("cmw-email").value.trim(),
      phone: $("cmw-phone").value.trim(), country: $("cmw-country").value,
      users: radio("users"), can_work: radio("can_work"), text: $("cmw-first").value.trim()
    };
    var problem = !v.name ? ["need_name", "cmw-name"] : !(v.email || v.phone) ? ["need_contact", "cmw-email"]
      : !v.country ? ["need_country", "cmw-country"] : !v.users ? ["need_users", null]
      : !v.can_work ? ["need_can_work", null] : !v.text ? ["need_text", "cmw-first"] : null;
    if (problem) {
      $("cmw-form-error").textContent = T[problem[0]];
      var field = problem[1] ? $(problem[1]) : document.querySelector('input[name="' + (v.users ? "can_work" : "users") + '"]');
      field.focus();
      return;
    }
    $("cmw-form-error").textContent = "";
    $("cmw-start").disabled = true;
    var frame = { type: "start", client_id: newId(), name: v.name, country: v.country, text: v.text,
      users: v.users, can_work: v.can_work === "yes" };
    if (v.email) frame.email = v.email;
    if (v.phone) frame.phone = v.phone;
    showConversation();
    queue(frame, v.text);
    $("cmw-text").focus();
  });
  $("cmw-compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("cmw-text").value.trim();
    if (!text) return;
    $("cmw-error").textContent = "";
    queue({ type: "message", client_id: newId(), text: text }, text);
    $("cmw-text").value = "";
  });
  $("cmw-text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault(); $("cmw-compose").requestSubmit();
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && cfg.embedded) window.parent.postMessage({ type: "cmw-close" }, "*");
  });
  if ($("cmw-close")) {
    $("cmw-close").addEventListener("click", function () { window.parent.postMessage({ type: "cmw-close" }, "*"); });
  }
  window.addEventListener("message", function (event) {
    // Only the embedding page may ask for focus; it carries no data.
    if (event.source !== window.parent || !event.data || event.data.type !== "cmw-focus") return;
    wantFocus = true;
    focusFirst();
  });
  function focusFirst() {
    // Before the welcome both views are hidden: focus once one of them is shown.
    var first = !$("cmw-form").hidden ? $("cmw-name") : !$("cmw-conversation").hidden ? $("cmw-text") : null;
    if (wantFocus && first) { first.focus(); wantFocus = false; }
  }
  if (host) {
    window.addEventListener("message", function init(event) {
      if (event.source !== window.parent || event.origin !== host) return;
      if (!event.data || event.data.type !== "cmw-init") return;
      window.removeEventListener("message", init);
      boot(event.data.saved);
    });
    window.parent.postMessage({ type: "cmw-ready" }, host);
  } else {
    var saved = {};
    ["token", "pending"].forEach(function (name) {
      try { saved[name] = JSON.parse(window.localStorage.getItem(KEY + name)); } catch (e) { /* none */ }
    });
    boot(saved);
  }
})();
