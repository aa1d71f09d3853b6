/* The live request feed: one WebSocket, a row per recorded request, newest first. */
(function () {
  "use strict";
  var section = document.getElementById("live-feed");
  if (!section) {
    return;
  }
  var rows = document.getElementById("live-feed-rows");
  var status = document.getElementById("live-feed-status");
  var maxRows = parseInt(section.dataset.maxRows || "200", 10);
  var sessionUrl = section.dataset.sessionUrl;
  var integer = new Intl.NumberFormat("en-US");
  var retryDelay = 1000;
  var REFUSED = { 4401: "Sign in again to watch the feed.", 4403: "You may not watch the request feed." };

  function setStatus(state, text) {
    section.dataset.state = state;
    status.textContent = text;
  }

  function cell(row, content, className) {
    var td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    if (content instanceof Node) {
      td.appendChild(content);
    } else {
      td.textContent = content === null || content === undefined ? "—" : String(content);
    }
    row.appendChild(td);
    return td;
  }

  function tokens(entry) {
    var text = integer.format(entry.input_tokens) + " / " + integer.format(entry.output_tokens);
    var cached = entry.cache_read_tokens + entry.cache_write_tokens;
    return cached ? text + " (+" + integer.format(cached) + " cache)" : text;
  }

  function addEntry(entry) {
    if (rows.querySelector('tr[data-request-id="' + CSS.escape(entry.request_id) + '"]')) {
      return;
    }
    var row = document.createElement("tr");
    row.dataset.requestId = entry.request_id;
    row.className = entry.status && entry.status >= 400 ? "live-error" : "";
    cell(row, entry.started_at ? window.gatehouseTime.element(entry.started_at) : null);
    cell(row, entry.user || "—", "live-user");
    cell(row, entry.model, "live-model");
    cell(row, entry.status, "live-status");
    cell(row, tokens(entry), "live-tokens");
    cell(row, entry.cost, "live-cost");
    cell(row, entry.latency_ms === null ? null : integer.format(entry.latency_ms) + " ms", "live-latency");
    cell(row, entry.ttfb_ms === null ? null : integer.format(entry.ttfb_ms) + " ms");
    if (entry.session_id && sessionUrl) {
      var link = document.createElement("a");
      link.href = sessionUrl.replace("__session__", encodeURIComponent(entry.session_id));
      link.textContent = entry.session_id.slice(0, 8) + "…";
      cell(row, link);
    } else {
      cell(row, null);
    }
    rows.insertBefore(row, rows.firstChild);
    window.gatehouseTime.localize(row);
    while (rows.children.length > maxRows) {
      rows.removeChild(rows.lastChild);
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + section.dataset.socketPath);
    setStatus("connecting", "Connecting…");
    socket.onopen = function () {
      retryDelay = 1000;
      setStatus("live", "Live");
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "requests") {
        message.requests.forEach(addEntry);
      }
    };
    socket.onclose = function (event) {
      if (REFUSED[event.code]) {
        setStatus("refused", REFUSED[event.code]);
        return;
      }
      setStatus("offline", "Disconnected; reconnecting…");
      window.setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
  }

  connect();
})();
