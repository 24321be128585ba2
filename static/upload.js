// Uploads for forms marked data-upload, with a progress bar. Without JavaScript the form posts
// normally. The CSRF token travels in the x-csrftoken header, so the server can refuse a request
// before reading any file bytes.
//
// Forms that also carry data-resumable send every file larger than data-chunk-size in chunks
// (core/documents/resumable.py): a dropped connection costs one chunk; the upload waits and goes
// on from where the server says it stands, and choosing the same file again after a reload
// resumes it too. Then the smaller files go together in one ordinary request, which also names
// the finished chunked uploads (done_uploads), so that its answer sums up every file.
//
// That answer is HTML from the server. Inside an element marked data-upload-region (the page
// behind a provider upload link) it takes the region's place: the thank-you with the number of
// files received. Otherwise it names the page to open next (a link marked data-upload-next: the
// patient's case page, with the new list, the status and anything left out of a ZIP).
(function () {
  "use strict";
  var RETRY_LIMIT = 12; // about five minutes of waiting, with the delays below
  var MAX_DELAY = 30000;

  function sleep(ms) {
    return new Promise(function (resolve) {
      var timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        resolve();
      }
      window.addEventListener("online", done); // the network came back: try at once
    });
  }

  // One request; resolves with {status, text} for any HTTP answer, rejects on a network error.
  function send(method, url, token, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var request = new XMLHttpRequest();
      request.open(method, url);
      if (token) request.setRequestHeader("x-csrftoken", token);
      request.setRequestHeader("x-upload-client", "1");
      if (onProgress && request.upload) {
        request.upload.addEventListener("progress", function (e) {
          onProgress(e.loaded);
        });
      }
      request.addEventListener("load", function () {
        resolve({
          status: request.status,
          text: request.responseText,
          type: request.getResponseHeader("content-type") || ""
        });
      });
      request.addEventListener("error", function () {
        reject(new Error("network"));
      });
      request.addEventListener("abort", function () {
        reject(new Error("network"));
      });
      request.send(body);
    });
  }

  function json(answer) {
    try {
      return JSON.parse(answer.text);
    } catch (error) {
      return null;
    }
  }

  function Refused(message) {
    this.message = message;
  }

  function enhance(form) {
    var bar = form.querySelector(".upload-progress");
    var status = form.querySelector("[data-upload-status]");
    var button = form.querySelector("button[type=submit]");
    var resumableUrl = form.getAttribute("data-resumable");
    var chunkSize = parseInt(form.getAttribute("data-chunk-size") || "0", 10);

    function say(text) {
      status.textContent = text;
    }

    form.addEventListener("submit", function (event) {
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files.length || !window.FormData || !window.Promise) return;
      event.preventDefault();
      var files = Array.prototype.slice.call(input.files);
      var token = (form.querySelector("input[name=_csrf_token]") || {}).value || "";
      var large = resumableUrl && chunkSize ? files.filter(function (f) { return f.size > chunkSize; }) : [];
      var small = files.filter(function (f) { return large.indexOf(f) < 0; });
      var total = files.reduce(function (sum, f) { return sum + f.size; }, 0) || 1;
      var finished = 0; // bytes of files, or chunks, the server has confirmed

      function show(inFlight) {
        var percent = Math.min(100, Math.round(((finished + inFlight) / total) * 100));
        bar.value = percent;
        return percent;
      }

      bar.hidden = false;
      bar.value = 0;
      if (button) button.disabled = true;
      say("Uploading…");

      var work = Promise.resolve();
      var doneUploads = []; // chunked uploads the server finished, named in the last request
      large.forEach(function (file) {
        work = work.then(function () {
          return sendInChunks(file).then(function (upload) { doneUploads.push(upload); });
        });
      });
      work = work.then(function () { return sendTogether(small, doneUploads); });
      work.then(
        function (answer) {
          say("Uploaded.");
          var region = form.closest("[data-upload-region]");
          var html = /text\/html/.test(answer.type) ? answer.text : "";
          if (region && html) {
            showInstead(region, html);
            return;
          }
          say("Uploaded. Updating the list…");
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var link = holder.querySelector("a[data-upload-next]");
          var next = link ? link.getAttribute("href") :
            window.location.pathname + "?notice=records-uploaded#records";
          var here = window.location.pathname + window.location.search;
          if (here === next.split("#")[0]) {
            window.location.reload(); // assigning the same URL would only move to its #fragment
          } else {
            window.location.assign(next);
          }
        },
        function (error) {
          say(error instanceof Refused ? error.message : "The upload did not work. Please try again.");
          bar.hidden = true;
          if (button) button.disabled = false;
        }
      );

      // The server's answer replaces the region (the form's card); focus moves to its result.
      function showInstead(region, html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("[data-upload-region]") || holder;
        region.parentNode.replaceChild(fresh, region);
        Array.prototype.forEach.call(fresh.querySelectorAll("form[data-upload]"), enhance);
        var result = fresh.querySelector("[data-upload-result]");
        if (result) result.focus();
      }

      function sendTogether(chosen, uploads) {
        var data = new FormData();
        new FormData(form).forEach(function (value, name) {
          if (name !== "file") data.append(name, value);
        });
        if (uploads.length) data.append("done_uploads", uploads.join(","));
        chosen.forEach(function (file) { data.append("file", file, file.name); });
        var size = chosen.reduce(function (sum, f) { return sum + f.size; }, 0);
        return send("POST", form.action, token, data, function (loaded) {
          say("Uploading… " + show(Math.min(loaded, size)) + "%");
        }).then(
          function (answer) {
            if (answer.status < 200 || answer.status >= 300) {
              throw new Refused(answer.text || "The upload did not work. Please try again.");
            }
            finished += size;
            return answer;
          },
          function () {
            // Only the summary of finished chunked uploads was lost: those files are stored.
            if (!chosen.length) return { status: 200, text: "", type: "" };
            throw new Refused("The connection was lost. Nothing was stored; please try again.");
          }
        );
      }

      function memoryKey(file) {
        return "consilium-upload:" + resumableUrl + ":" + [file.name, file.size, file.lastModified].join(":");
      }

      function remembered(file) {
        try { return window.localStorage.getItem(memoryKey(file)); } catch (error) { return null; }
      }

      function remember(file, upload) {
        try {
          if (upload) window.localStorage.setItem(memoryKey(file), upload);
          else window.localStorage.removeItem(memoryKey(file));
        } catch (error) { /* private browsing: resuming after a reload is then not possible */ }
      }

      // Asks again until the server answers: a lost connection is waited out, not reported.
      function patiently(what, attempt) {
        attempt = attempt || 0;
        return what().catch(function (error) {
          if (error instanceof Refused || attempt >= RETRY_LIMIT) throw error instanceof Refused ? error :
            new Refused("The connection was lost. What arrived is kept: choose the same file again to go on.");
          var delay = Math.min(MAX_DELAY, 1000 * Math.pow(2, attempt));
          say("The connection was lost. Trying again in " + Math.round(delay / 1000) + " s… (" +
            show(0) + "% sent, nothing is lost)");
          return sleep(delay).then(function () { return patiently(what, attempt + 1); });
        });
      }

      function state(answer) {
        var found = json(answer);
        if (answer.status >= 200 && answer.status < 300 && found) return found;
        if (answer.status === 409 && found) return found; // "go on from chunk N"
        if (answer.status >= 500 || answer.status === 400) throw new Error("retry");
        throw new Refused(answer.text || "The upload did not work. Please try again.");
      }

      function begin(file) {
        var upload = remembered(file);
        var resume = upload
          ? send("GET", resumableUrl + "/" + upload, token).then(function (answer) {
              var found = answer.status === 200 ? json(answer) : null;
              return found && found.status === "open" ? found : null;
            })
          : Promise.resolve(null);
        return resume.then(function (found) {
          if (found) return found;
          var body = new FormData();
          body.append("filename", file.name);
          body.append("size", String(file.size));
          var item = form.querySelector("[name=checklist_item]");
          if (item) body.append("checklist_item", item.value);
          return send("POST", resumableUrl, token, new URLSearchParams(body)).then(function (answer) {
            if (answer.status !== 201) throw new Refused(answer.text || "The upload did not work.");
            var made = json(answer);
            remember(file, made.upload);
            return made;
          });
        });
      }

      function sendInChunks(file) {
        var base = finished;
        return patiently(function () { return begin(file); }).then(function (upload) {
          var url = resumableUrl + "/" + upload.upload;
          function step(current) {
            finished = base + current.received_bytes;
            if (current.status === "done") {
              remember(file, null);
              finished = base + file.size;
              return null;
            }
            if (current.status === "failed") {
              remember(file, null);
              throw new Refused(current.message || "This file could not be saved. Please upload it again.");
            }
            if (current.status === "assembling") {
              // Every piece is in and the server is checking and storing the file.
              say("Checking and saving " + file.name + "…");
              return sleep(1000)
                .then(function () { return patiently(function () { return send("GET", url, token).then(state); }); })
                .then(step);
            }
            var number = current.chunks_done;
            var start = number * current.chunk_size;
            var piece = file.slice(start, Math.min(start + current.chunk_size, file.size));
            return patiently(function () {
              var last = number === current.chunks - 1;
              return send("PUT", url + "/chunks/" + number, token, piece, function (loaded) {
                if (last && loaded >= piece.size) say("Checking and saving " + file.name + "…");
                else say("Uploading " + file.name + "… " + show(Math.min(loaded, piece.size)) + "%");
              }).then(state, function (error) {
                // Lost on the way: ask where the server stands before sending anything again.
                return send("GET", url, token).then(state).then(function (found) {
                  if (found.chunks_done === number) throw error;
                  return found;
                });
              });
            }).then(step);
          }
          return Promise.resolve(step(upload)).then(function () { return upload.upload; });
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload]").forEach(enhance);
  });
})();
