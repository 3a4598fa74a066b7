// Live updates: refetch this page's live part every few seconds (ETag: 304 when
// nothing changed) and swap it in. Without JavaScript the pages read the same.
(function () {
  "use strict";
  var seconds = Number(document.body.dataset.live || 0);
  var region = document.getElementById("live");
  if (!seconds || !region || !window.fetch) return;
  var etag = null;
  function refresh() {
    if (document.hidden) return;
    var headers = { "X-Chronctl-Live": "1" };
    if (etag) headers["If-None-Match"] = etag;
    fetch(window.location.href, { headers: headers, credentials: "same-origin", cache: "no-cache" })
      .then(function (r) {
        if (r.status !== 200) return null;
        etag = r.headers.get("ETag");
        return r.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) region.innerHTML = html;
      })
      .catch(function () {});
  }
  setInterval(refresh, seconds * 1000);
})();
