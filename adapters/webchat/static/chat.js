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
  var askDetails = false, typingTimer = null, welcomeLine = null;

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
      if (f.case) showCase(f.case.tracking, f.case.status, tracking === null);
      focusFirst();
      welcomeLine = f;
      showHours(tracking ? f : lineStatus());
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
    message: function (f) {
      addMessage(f);
      if (f.from === "agent") { $("cmw-typing").textContent = ""; notifyParent(); }
    },
    typing: function (f) {
      var box = $("cmw-typing");
      box.textContent = T.typing.replace("{name}", f.author || T.agent);
      window.clearTimeout(typingTimer);
      typingTimer = window.setTimeout(function () { box.textContent = ""; }, 6000);
    },
    status: function (f) {
      showCase(f.tracking, f.status, false);
      $("cmw-csat").hidden = !f.csat;
      if (f.status === "closed") addNotice(T.closed_note);
      notifyParent();
    },
    details_saved: function () {
      $("cmw-details").hidden = true;
      addNotice(T.details_saved);
    },
    ack: function (f) {
      pending = pending.filter(function (p) { return p.frame.client_id !== f.client_id; });
      save("pending", pending);
      var li = bubble(f.client_id);
      if (li) { li.setAttribute("data-id", String(f.id)); markSaved(li); }
    },
    ticket: function (f) {
      tracking = f.tracking;
      showConversation();
      showCase(f.tracking, "new", false);
      if (f.notice) addNotice(f.notice);
      if (!f.after_hours) $("cmw-hours").hidden = true;
      if (askDetails) { $("cmw-details").hidden = false; askDetails = false; }
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
      var slot = f.field && fieldError(f.field);
      if (slot) { showFieldError(f.field, f.message); }
      else {
        var target = $("cmw-form").hidden ? $("cmw-error") : $("cmw-form-error");
        target.textContent = f.message;
      }
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
    li = makeBubble(f.from, f.text, f.at, f.client_id, f.author);
    if (f.id != null) li.setAttribute("data-id", String(f.id));
    markSaved(li);
    // Keep stored order (ids grow with commit order): before a later saved message or an
    // unsaved one; notices ("an agent will answer you") keep their place.
    var before = null, items = log.children;
    for (var i = 0; f.id != null && i < items.length; i++) {
      if (!items[i].classList.contains("cmw-msg")) continue;
      var id = items[i].getAttribute("data-id");
      var unsaved = id === null && items[i].classList.contains("cmw-pending");
      if (unsaved || (id !== null && Number(id) > Number(f.id))) { before = items[i]; break; }
    }
    log.insertBefore(li, before);
    toNewest();
  }
  function toNewest() { var log = $("cmw-log"); log.scrollTop = log.scrollHeight; }
  function makeBubble(from, text, at, clientId, author) {
    var li = document.createElement("li");
    li.className = "cmw-msg cmw-" + (from === "agent" ? "agent" : "customer") + " cmw-pending";
    if (clientId) li.setAttribute("data-client-id", clientId);
    var who = document.createElement("span"); who.className = "cmw-who";
    who.textContent = from === "agent" ? (author || T.agent) : T.you;
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
    toNewest();
  }
  function showCase(number, state, closedOnly) {
    if (!number) return;
    $("cmw-tracking").textContent = number;
    $("cmw-case-status").textContent = T["status_" + state] || state;
    $("cmw-ticket").hidden = false;
    $("cmw-ticket").setAttribute("data-status", state);
    if (closedOnly && state === "closed") $("cmw-ticket").hidden = false;
  }
  function lineStatus() { return lines[$("cmw-country").value] || welcomeLine; }
  // A closed line: the form becomes the offline form (message and email, says when we open).
  function offlineMode(st) {
    var off = !!(st && st.open === false);
    $("cmw-form").classList.toggle("cmw-offline-mode", off);
    $("cmw-offline").hidden = !off;
    $("cmw-intro").hidden = off;
    $("cmw-impact").hidden = off;
    $("cmw-offline-text").textContent = off ? T.offline_intro.replace("{opening}", st.opening || "") : "";
    $("cmw-start").textContent = off ? $("cmw-start").getAttribute("data-offline") : $("cmw-start").getAttribute("data-online");
    $("cmw-email").required = off;
    $("cmw-about-legend").textContent = off ? T.about_you_offline : T.about_you;
    var open = $("cmw-open");
    open.hidden = off || !(st && st.hours);
    open.textContent = open.hidden ? "" : T.open_now.replace("{hours}", st.hours);
  }
  // -- per-field validation: a message under the field, cleared as soon as it is fixed -------
  function fieldError(name) { return $("cmw-" + name + "-error"); }
  function fieldInput(name) {
    return $("cmw-" + (name === "text" ? "first" : name)) || document.querySelector('input[name="' + name + '"]');
  }
  function showFieldError(name, message) {
    var slot = fieldError(name === "text" ? "first" : name), input = fieldInput(name);
    if (!slot) return;
    slot.textContent = message || "";
    if (input) { if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid"); }
  }
  var EMAIL = /^[^@\s<>"]{1,64}@[^@\s<>"]+\.[^@\s<>"]{2,}$/;
  function phoneOk(v) { var d = v.replace(/[^0-9]/g, ""); return /^[+0-9 ().-]+$/.test(v) && d.length >= 7 && d.length <= 15; }
  function problems(prefix, v, offline) {
    var out = {};
    if (prefix === "cmw-" && !v.text) out.first = T.need_text;
    if (v.email && !EMAIL.test(v.email)) out[prefix === "cmw-" ? "email" : "d-email"] = T.need_email_valid;
    if (offline && !v.email) out.email = T.need_email_offline;
    if (v.phone && !phoneOk(v.phone)) out[prefix === "cmw-" ? "phone" : "d-phone"] = T.need_phone_valid;
    if (!offline && prefix === "cmw-" && v.users && !v.can_work) out.can_work = T.need_can_work;
    if (!offline && prefix === "cmw-" && !v.users && v.can_work) out.users = T.need_users;
    return out;
  }
  function showProblems(all, names) {
    names.forEach(function (n) { showFieldError(n, all[n] || ""); });
    var first = names.filter(function (n) { return all[n]; })[0];
    if (first) { var el = fieldInput(first); if (el) el.focus(); }
    return !!first;
  }
  function showHours(status) {
    var box = $("cmw-hours");
    offlineMode(status);
    // Before the chat the offline form says when we open; during it, the notice does.
    box.hidden = !(status && status.open === false && status.notice) || !$("cmw-form").hidden;
    box.textContent = box.hidden ? "" : status.notice;
  }
  function showForm() {
    $("cmw-form").hidden = false; $("cmw-conversation").hidden = true; $("cmw-ticket").hidden = true;
  }
  function showConversation() {
    $("cmw-form").hidden = true; $("cmw-conversation").hidden = false;
    if (tracking) { $("cmw-tracking").textContent = tracking; $("cmw-ticket").hidden = false; }
    toNewest();
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
    country = this.value || null; showHours(lineStatus());
  });
  var FIELDS = ["first", "email", "phone", "users", "can_work"];
  function formValues() {
    return {
      name: $("cmw-name").value.trim(), email: $("cmw-email").value.trim(),
      phone: $("cmw-phone").value.trim(), country: $("cmw-country").value,
      users: radio("users"), can_work: radio("can_work"), text: $("cmw-first").value.trim()
    };
  }
  function offlineNow() { return $("cmw-form").classList.contains("cmw-offline-mode"); }
  // Fixing a field clears its message at once (and only that field is checked again).
  ["first", "email", "phone"].forEach(function (n) {
    $("cmw-" + n).addEventListener("input", function () {
      if (!fieldError(n).textContent) return;
      showFieldError(n, problems("cmw-", formValues(), offlineNow())[n] || "");
    });
  });
  ["users", "can_work"].forEach(function (n) {
    document.querySelectorAll('input[name="' + n + '"]').forEach(function (el) {
      el.addEventListener("change", function () {
        var all = problems("cmw-", formValues(), offlineNow());
        showFieldError("users", all.users || ""); showFieldError("can_work", all.can_work || "");
      });
    });
  });
  $("cmw-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var v = formValues();
    if (showProblems(problems("cmw-", v, offlineNow()), FIELDS)) return;
    $("cmw-form-error").textContent = "";
    $("cmw-start").disabled = true;
    // Type first: a message alone starts the chat (`begin`); name and contact may follow.
    var full = v.name && (v.email || v.phone);
    var frame = { type: full ? "start" : "begin", client_id: newId(), text: v.text };
    ["name", "email", "phone", "country"].forEach(function (k) { if (v[k]) frame[k] = v[k]; });
    if (v.users && v.can_work) { frame.users = v.users; frame.can_work = v.can_work === "yes"; }
    askDetails = !(v.email || v.phone);
    if (v.name) $("cmw-d-name").value = v.name;
    showConversation();
    queue(frame, v.text);
    $("cmw-text").focus();
  });
  // The details card, after a message sent without a way to reach the customer.
  ["d-email", "d-phone"].forEach(function (n) {
    $("cmw-" + n).addEventListener("input", function () {
      if (!fieldError(n).textContent) return;
      showFieldError(n, problems("cmw-d-", detailValues(), false)[n] || "");
    });
  });
  function detailValues() {
    return { name: $("cmw-d-name").value.trim(), email: $("cmw-d-email").value.trim(), phone: $("cmw-d-phone").value.trim() };
  }
  $("cmw-details").addEventListener("submit", function (event) {
    event.preventDefault();
    var v = detailValues();
    if (showProblems(problems("cmw-d-", v, false), ["d-email", "d-phone"])) return;
    if (!v.name && !v.email && !v.phone) { $("cmw-details").hidden = true; return; }
    var frame = { type: "details", client_id: newId() };
    ["name", "email", "phone"].forEach(function (k) { if (v[k]) frame[k] = v[k]; });
    if (country) frame.country = country;
    send(frame);
  });
  $("cmw-d-skip").addEventListener("click", function () { $("cmw-details").hidden = true; $("cmw-text").focus(); });
  // The 1-5 rating after the resolution notice: sent as an ordinary message.
  document.querySelectorAll(".cmw-score").forEach(function (button) {
    button.addEventListener("click", function () {
      var score = button.getAttribute("data-score");
      queue({ type: "message", client_id: newId(), text: score }, score);
      $("cmw-csat").hidden = true;
      addNotice(T.csat_thanks);
    });
  });
  // Images: shrunk in the page when large, sent over HTTP with the visitor's token.
  var MAX_SIDE = 1600, MAX_BYTES = 900000;
  $("cmw-file").addEventListener("change", function () {
    var file = this.files && this.files[0];
    this.value = "";
    if (!file || !tracking) return;
    if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type)) { $("cmw-error").textContent = T.attach_bad; return; }
    $("cmw-error").textContent = "";
    shrink(file, function (blob) { upload(blob, file.name); });
  });
  function shrink(file, done) {
    if (file.size <= MAX_BYTES || file.type === "image/gif") { done(file); return; }
    var url = URL.createObjectURL(file), img = new Image();
    img.onload = function () {
      var scale = Math.min(1, MAX_SIDE / Math.max(img.width, img.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(img.width * scale); canvas.height = Math.round(img.height * scale);
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(url);
      canvas.toBlob(function (blob) { done(blob || file); }, "image/jpeg", 0.85);
    };
    img.onerror = function () { URL.revokeObjectURL(url); done(file); };
    img.src = url;
  }
  function upload(blob, name) {
    var cid = newId();
    var li = makeBubble("customer", "", null, cid);
    var img = document.createElement("img");
    img.className = "cmw-image"; img.alt = name; img.src = URL.createObjectURL(blob);
    li.insertBefore(img, li.querySelector(".cmw-text"));
    $("cmw-log").appendChild(li); toNewest();
    var query = "?client_id=" + cid + "&tracking=" + encodeURIComponent(tracking) + "&name=" + encodeURIComponent(name);
    fetch("/chat/upload" + query, {
      method: "POST", body: blob, headers: { "Authorization": "Bearer " + load("token", ""), "Content-Type": blob.type || "image/jpeg" }
    }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.json();
    }).then(function (body) {
      li.setAttribute("data-id", String(body.id)); markSaved(li);
    }).catch(function (err) {
      li.parentNode.removeChild(li);
      $("cmw-error").textContent = String(err.message) === "413" ? T.attach_too_big : T.attach_failed;
    });
  }
  $("cmw-compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("cmw-text").value.trim();
    if (!text) return;
    $("cmw-error").textContent = "";
    queue({ type: "message", client_id: newId(), text: text }, text);
    $("cmw-text").value = "";
  });
  // Type first: Enter sends the first message too (Shift+Enter for a new line).
  $("cmw-first").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault(); $("cmw-form").requestSubmit();
    }
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
    var first = !$("cmw-form").hidden ? $("cmw-first") : !$("cmw-conversation").hidden ? $("cmw-text") : null;
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
