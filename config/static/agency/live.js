/* Live updates for the dashboard pages, over SSE (django-eventstream).
 *
 * A page names its streams with data-stream="<url>" attributes. For each, one EventSource is
 * opened; every event it carries is re-dispatched on document.body as a DOM event named
 * "agency-<type>" (agency-snapshot, agency-task, agency-event, agency-reset) with the parsed
 * JSON as event.detail, so htmx fragments refresh with hx-trigger="agency-task from:body".
 * KPI snapshots also fill every [data-kpi="<name>"] element with snapshot.display[name].
 *
 * A page names the id it was rendered at (data-last-event-id): the first connection asks for
 * what came after it, so nothing that changed between the render and the connection is lost.
 *
 * Catching up: while the connection is merely interrupted the browser reconnects by itself
 * and sends Last-Event-ID. When the EventSource gives up (closed), this script opens a new
 * one after a growing delay with ?lastEventId=<the last id seen>, so the server replays what
 * was missed, in order; a "stream-reset" (the id is older than what is kept) makes the page
 * refetch its fragments instead (agency-reset).
 */
(function () {
  "use strict";
  var TYPES = ["snapshot", "task", "event"];
  var streams = {};

  function setStatus(text) {
    var nodes = document.querySelectorAll("[data-live-status]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = text;
      nodes[i].setAttribute("data-state", text);
    }
  }

  function fire(type, detail) {
    document.body.dispatchEvent(new CustomEvent("agency-" + type, { detail: detail, bubbles: true }));
  }

  function fillKpis(snapshot) {
    if (!snapshot || !snapshot.display) return;
    var nodes = document.querySelectorAll("[data-kpi]");
    for (var i = 0; i < nodes.length; i++) {
      var name = nodes[i].getAttribute("data-kpi");
      if (Object.prototype.hasOwnProperty.call(snapshot.display, name)) {
        nodes[i].textContent = snapshot.display[name];
      }
    }
  }

  function open(url, renderedAt) {
    var state = streams[url] || (streams[url] = { url: url, lastId: renderedAt || "", delay: 1000, source: null, timer: null, received: 0 });
    var src = url;
    if (state.lastId) src += (url.indexOf("?") >= 0 ? "&" : "?") + "lastEventId=" + encodeURIComponent(state.lastId);
    var source = new EventSource(src);
    state.source = source;
    source.addEventListener("stream-open", function (ev) {
      // The id the stream starts from: a page that hears no event before a cut resumes here.
      if (ev.lastEventId && !state.lastId) state.lastId = ev.lastEventId;
      state.delay = 1000;
      setStatus("live");
    });
    TYPES.forEach(function (type) {
      source.addEventListener(type, function (ev) {
        if (ev.lastEventId) state.lastId = ev.lastEventId;
        state.received += 1;
        var detail = null;
        try { detail = JSON.parse(ev.data); } catch (e) { detail = ev.data; }
        if (type === "snapshot") fillKpis(detail);
        fire(type, detail);
      });
    });
    source.addEventListener("stream-reset", function (ev) {
      if (ev.lastEventId) state.lastId = ev.lastEventId;
      fire("reset", null);
    });
    source.addEventListener("stream-error", function () {
      // The server refused the stream (signed out, no role): do not hammer it.
      source.close();
      setStatus("offline");
    });
    source.onerror = function () {
      setStatus("reconnecting");
      if (source.readyState === EventSource.CLOSED) reconnect(url);
    };
    return state;
  }

  function reconnect(url) {
    var state = streams[url];
    if (!state || state.timer) return;
    if (state.source) state.source.close();
    // Between half the delay and all of it: pages cut off together (a restart) do not all come back
    // in the same instant.
    state.timer = setTimeout(function () {
      state.timer = null;
      open(url);
    }, state.delay * (0.5 + Math.random() / 2));
    state.delay = Math.min(state.delay * 2, 30000);
  }

  function start() {
    var nodes = document.querySelectorAll("[data-stream]");
    for (var i = 0; i < nodes.length; i++) {
      var url = nodes[i].getAttribute("data-stream");
      // data-last-event-id: the id the page was rendered at; the stream replays from there.
      if (url && !streams[url]) open(url, nodes[i].getAttribute("data-last-event-id"));
    }
  }

  // For the page's own use and for tests that cut a connection: drop(url) closes the
  // stream as a failed network would, and it reconnects after the usual delay.
  window.agencyLive = {
    streams: streams,
    drop: function (url) {
      var state = streams[url];
      if (state && state.source) { state.source.close(); setStatus("reconnecting"); reconnect(url); }
    }
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
