// pushtrack dashboard: rows of the delivery trail, built without HTML strings.
window.ptTrailRow = function (app, r, withExtra) {
  "use strict";
  var tr = document.createElement("tr");
  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) {
      var span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text == null ? "" : String(text);
    }
    tr.appendChild(td);
    return td;
  }
  var status = r.action || r.status;
  cell(r.timestamp);
  cell(status, "status " + status);
  var m = cell("");
  var a = document.createElement("a");
  a.href = "/apps/" + encodeURIComponent(app) + "/messages/" + encodeURIComponent(r.message_code);
  a.textContent = r.message_code;
  m.appendChild(a);
  cell(r.hwid);
  cell(r.platform);
  cell(r.description);
  if (withExtra) {
    cell(r.gateway_id || "");
    cell(r.failure_class || "");
    cell(r.attempts != null ? r.attempts : r.attempt);
  }
  return tr;
};
