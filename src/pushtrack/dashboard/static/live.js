// pushtrack dashboard: an application's events as they happen (server-sent events).
(function () {
  "use strict";
  var table = document.getElementById("live");
  if (!table) return;
  var body = table.querySelector("tbody");
  var state = document.getElementById("live-state");
  var pause = document.getElementById("live-pause");
  var form = document.getElementById("live-filters");
  var KEEP = 200;
  var source = null;
  var lastId = null;
  var paused = false;

  function url() {
    var params = new URLSearchParams(new FormData(form));
    Array.from(params.keys()).forEach(function (k) { if (!params.get(k)) params.delete(k); });
    if (lastId) params.set("after", lastId);
    var q = params.toString();
    return table.dataset.stream + (q ? "?" + q : "");
  }
  var STATUSES = ["created", "sent", "delivered", "failed", "opened", "confirmed"];
  function shown(e) {
    lastId = e.lastEventId || lastId;
    var r = JSON.parse(e.data);
    body.insertBefore(window.ptTrailRow(table.dataset.app, r, false), body.firstChild);
    while (body.children.length > KEEP) body.removeChild(body.lastChild);
    table.dataset.count = String((Number(table.dataset.count) || 0) + 1);
  }
  function open() {
    if (source) source.close();
    source = new EventSource(url());
    source.onopen = function () { state.textContent = "live"; table.dataset.state = "live"; };
    source.onerror = function () { state.textContent = "reconnecting…"; };
    // each event is named by its status, as the API's event stream names them
    STATUSES.forEach(function (status) { source.addEventListener(status, shown); });
  }
  pause.addEventListener("click", function () {
    paused = !paused;
    if (paused) {
      if (source) source.close();
      source = null;
      state.textContent = "paused";
      table.dataset.state = "paused";
      pause.textContent = "Resume";
    } else {
      pause.textContent = "Pause";
      open(); // from the last event shown: nothing missed while paused
    }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    lastId = null;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!paused) open();
  });
  open();
})();
