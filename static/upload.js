// Upload progress for forms marked data-upload. Without JavaScript the form posts normally.
// The CSRF token travels in the x-csrftoken header, so the server can refuse the request
// before reading any file bytes.
(function () {
  "use strict";
  function enhance(form) {
    var bar = form.querySelector(".upload-progress");
    var status = form.querySelector("[data-upload-status]");
    form.addEventListener("submit", function (event) {
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files.length || !window.FormData) return;
      event.preventDefault();
      var token = form.querySelector("input[name=_csrf_token]");
      var data = new FormData(form);
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      if (token) request.setRequestHeader("x-csrftoken", token.value);
      request.setRequestHeader("x-upload-client", "1");
      bar.hidden = false;
      request.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var percent = Math.round((e.loaded / e.total) * 100);
        bar.value = percent;
        status.textContent = "Uploading… " + percent + "%";
      });
      request.addEventListener("load", function () {
        if (request.status >= 200 && request.status < 300) {
          status.textContent = "Uploaded. Updating the list…";
          var next = form.getAttribute("data-upload-done") ||
            window.location.pathname + "?notice=records-uploaded";
          if (window.location.pathname + window.location.search === next) {
            window.location.reload(); // assigning the same URL would only move to its #fragment
          } else {
            window.location.assign(next + "#records");
          }
        } else {
          status.textContent = request.responseText || "The upload did not work. Please try again.";
          bar.hidden = true;
        }
      });
      request.addEventListener("error", function () {
        status.textContent = "The connection was lost. Nothing was stored; please try again.";
        bar.hidden = true;
      });
      status.textContent = "Uploading…";
      request.send(data);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload]").forEach(enhance);
  });
})();
