// pushtrack dashboard: a test push's statuses as they arrive.
(function () {
  "use strict";
  var box = document.getElementById("push-trail");
  if (!box) return;
  var app = box.dataset.poll.split("/")[2];
  var rounds = 0;
  function poll() {
    fetch(box.dataset.poll, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (out) {
        var body = box.querySelector("tbody");
        while (body.firstChild) body.removeChild(body.firstChild);
        var ended = false;
        out.data.forEach(function (r) {
          body.appendChild(window.ptTrailRow(app, r, true));
          if (r.action === "delivered" || r.action === "failed") ended = true;
        });
        box.dataset.rows = String(out.data.length);
        rounds += 1;
        if (!ended && rounds < 120) setTimeout(poll, 1000);
      });
  }
  setTimeout(poll, 500);
})();
