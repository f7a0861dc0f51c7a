// pushtrack dashboard: watch an export until its file is ready.
(function () {
  "use strict";
  var status = document.getElementById("export-status");
  if (!status) return;
  function poll() {
    fetch(status.dataset.poll, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (out) {
        status.textContent = out.status;
        if (out.status === "done" && out.fileName) {
          var a = document.getElementById("download");
          a.href = out.fileName;
          a.hidden = false;
          return;
        }
        if (out.status === "failed") {
          var reason = document.getElementById("export-reason");
          reason.textContent = out.reason || "failed";
          reason.hidden = false;
          return;
        }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (status.textContent !== "done" && status.textContent !== "failed") setTimeout(poll, 500);
})();
