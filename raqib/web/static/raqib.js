// Progressive enhancement only: every page works without this file. The subscription
// editor's preview follows the query as it is typed (the server renders the fragment,
// escaped; this only swaps it in). No third-party code, nothing leaves this server.
(function () {
  "use strict";
  var input = document.querySelector("input[data-preview]");
  var target = document.getElementById("preview");
  if (!input || !target || !window.fetch) return;
  var timer = null, seq = 0;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var mine = ++seq;
      fetch(input.getAttribute("data-preview") + "?q=" + encodeURIComponent(input.value),
            {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null && mine === seq) target.innerHTML = html; })
        .catch(function () {});
    }, 350);
  });
})();
