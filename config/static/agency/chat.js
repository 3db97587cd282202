/* The chat page's WebSocket client (docs/chat-protocol.md).
 *
 * Connects to /api/v1/chat/ws/<session>?after=<the last sequence number on the page>, so it
 * gets exactly what the page does not show yet; appends every message once (by seq), shows
 * acks and error frames, and reconnects after a drop with a growing delay and the new last
 * seq. The form is sent over the socket while it is open; otherwise it posts as a plain form.
 * window.agencyChat.drop() closes the socket as a failed network would (for tests).
 */
(function () {
  "use strict";
  var list = document.getElementById("chat-messages");
  if (!list) return;
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var errors = document.getElementById("chat-errors");
  var status = document.querySelector("[data-chat-status]");
  var session = list.getAttribute("data-session");
  var lastSeq = parseInt(list.getAttribute("data-last-seq") || "0", 10);
  var FINAL = { 4400: true, 4401: true, 4403: true, 4404: true, 4409: true };
  var socket = null, delay = 1000, timer = null, counter = 0;

  function setStatus(text) { if (status) { status.textContent = text; status.setAttribute("data-state", text); } }

  function showError(text) {
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = text;
    errors.replaceChildren(p);
  }

  function append(m) {
    if (m.seq <= lastSeq) return;  // already on the page
    var empty = list.querySelector("[data-empty]");
    if (empty) empty.remove();
    var li = document.createElement("li");
    li.id = "message-" + m.seq;
    li.className = "chat-message " + m.role;
    li.setAttribute("data-seq", String(m.seq));
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = m.role;
    var time = document.createElement("time");
    time.setAttribute("datetime", m.created_at);
    time.textContent = (m.created_at || "").slice(11, 19);
    var body = document.createElement("pre");
    body.tabIndex = 0;
    body.textContent = m.content;
    li.append(who, " ", time, body);
    list.appendChild(li);
    lastSeq = m.seq;
    list.setAttribute("data-last-seq", String(lastSeq));
    li.scrollIntoView({ block: "nearest" });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/api/v1/chat/ws/" + session + "?after=" + lastSeq);
    setStatus("connecting");
    socket.onopen = function () { delay = 1000; setStatus("live"); };
    socket.onmessage = function (ev) {
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (frame.type === "history") (frame.messages || []).forEach(append);
      else if (frame.type === "message") append(frame.message);
      else if (frame.type === "ack") { errors.replaceChildren(); setStatus("live (sent #" + frame.seq + ")"); }
      else if (frame.type === "error") {
        if (frame.code === "closed") { setStatus("closed"); showError(frame.detail); }
        else showError(frame.detail + (frame.field ? " (" + frame.field + ")" : ""));
      }
    };
    socket.onclose = function (ev) {
      socket = null;
      if (FINAL[ev.code]) { setStatus("closed"); return; }
      setStatus("reconnecting");
      if (timer) return;
      // Jittered (half the delay to all of it), so sockets dropped together do not all return at once.
      timer = setTimeout(function () { timer = null; connect(); }, delay * (0.5 + Math.random() / 2));
      delay = Math.min(delay * 2, 30000);
    };
  }

  if (form) {
    form.addEventListener("submit", function (ev) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;  // a plain post instead
      ev.preventDefault();
      var text = input.value;
      if (!text.trim()) return;
      counter += 1;
      socket.send(JSON.stringify({ type: "message", content: text, client_id: "page-" + counter }));
      input.value = "";
    });
  }

  window.agencyChat = {
    drop: function () { if (socket) socket.close(4000, "dropped"); },
    lastSeq: function () { return lastSeq; }
  };
  connect();
})();
