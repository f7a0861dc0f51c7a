// pushtrack dashboard: a large message's failures, grouped after the page has shown.
(function () {
  "use strict";
  var box = document.getElementById("failures-box");
  if (!box) return;
  fetch(box.dataset.src, { credentials: "same-origin" })
    .then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.text();
    })
    .then(function (html) {
      // a fragment this server rendered (escaped), holding no script
      var doc = new DOMParser().parseFromString(html, "text/html");
      box.replaceChildren.apply(box, Array.from(doc.body.childNodes));
    })
    .catch(function () { box.textContent = "The failures could not be grouped."; });
})();
