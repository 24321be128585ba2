// Uploads for forms marked data-upload, with a progress bar. Without JavaScript the form posts
// normally. The CSRF token travels in the x-csrftoken header, so the server can refuse a request
// before reading any file bytes.
//
// Every file input of the form counts: "Choose files", and "Choose a folder" (webkitdirectory),
// whose system files (.DS_Store, Thumbs.db, desktop.ini, ._*, __MACOSX/) are left out as the ZIP
// unpacker leaves them out (core/documents/archive.py).
//
// Forms that also carry data-resumable send every file larger than data-chunk-size in chunks
// (core/documents/resumable.py): a dropped connection costs one chunk; the upload waits and goes
// on from where the server says it stands, and choosing the same file again after a reload
// resumes it too.
//
// The other files go in batches of at most BATCH_FILES files and data-chunk-size bytes (the
// server reads at most 1,000 files per request: core/documents/upload_stream.py), PARALLEL
// batches at a time; the first batch goes alone (through a doctor's upload link its answer
// carries the group that later batches name, so that one upload takes one use of the link) and
// so does the last, which names what the others stored (done_uploads, done_documents,
// done_already) so that its answer sums up every file. A batch lost on the way, or answered
// 5xx, is sent again: the server recognises files it has already (by their SHA-256) and does
// not store them twice. Each answer says, file by file, what became of it (data-upload-outcome:
// stored, already there, refused and why); a batch refused as a whole stops the upload.
//
// When every file is in, the last answer (HTML from the server) is shown: inside an element
// marked data-upload-region (the page behind a doctor's upload link) it takes the region's place
// — the thank-you with the number of files received; otherwise it names the page to open next (a
// link marked data-upload-next: the patient's case page with the new list). When some are not,
// the form says which files are in and which are not, and why: the person can send those again.
(function () {
  "use strict";
  var RETRY_LIMIT = 12; // about five minutes of waiting, with the delays below
  var MAX_DELAY = 30000;
  // Measured 2026-12-06 in Chromium (2 cores, SQLite) for a folder of 300 small DICOM files:
  // batches of 25 over 2 connections took 3.2-5.2 s (median 3.8 s), one file per request over 4
  // or 6 connections 5.7-9.6 s (median 6.9 s); batches of 50 or 100, 1-3 connections, were
  // within the noise of 25 x 2. Smaller batches lose less to a dropped connection.
  var BATCH_FILES = 25;
  var PARALLEL = 2;
  var SERVER_RETRIES = 2; // a batch answered 5xx is sent again this often, then reported
  var JUNK_FILES = [".ds_store", "thumbs.db", "desktop.ini"];
  var JUNK_FOLDERS = ["__macosx"];
  var SHOW_NAMES = 8; // more files than this for one reason are listed behind "N files"

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

  // One request; resolves with {status, text, type} for any HTTP answer, rejects on a network
  // error.
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

  // The server's answer to a batch, as HTML, and the outcome of each of its files.
  function parsed(answer) {
    var holder = document.createElement("div");
    if (/text\/html/.test(answer.type)) holder.innerHTML = answer.text;
    var marked = holder.querySelector("[data-upload-outcome]");
    var outcome = null;
    if (marked) {
      try {
        outcome = JSON.parse(marked.getAttribute("data-upload-outcome"));
      } catch (error) {
        outcome = null;
      }
    }
    return { holder: holder, outcome: outcome };
  }

  function Refused(message) {
    this.message = message;
  }

  // The whole upload cannot go on (a batch refused as a whole, the connection gone for good).
  function Stopped(message) {
    this.message = message;
  }

  function junk(path) {
    var parts = path.toLowerCase().split("/");
    var last = parts[parts.length - 1];
    return parts.slice(0, -1).some(function (part) { return JUNK_FOLDERS.indexOf(part) >= 0; }) ||
      JUNK_FILES.indexOf(last) >= 0 || last.indexOf("._") === 0;
  }

  function chosen(form) {
    var items = [];
    chosen.systemFiles = 0;
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        var name = file.webkitRelativePath || file.name;
        if (input.hasAttribute("webkitdirectory") && junk(name)) {
          chosen.systemFiles = (chosen.systemFiles || 0) + 1;
          return;
        }
        items.push({ file: file, name: name, state: "", reason: "" });
      });
    });
    // In name order (IM2 before IM10): what is in and what is not reads as runs of files.
    return items.sort(function (a, b) {
      return a.name.localeCompare(b.name, undefined, { numeric: true });
    });
  }

  // Batches of at most `count` files and `bytes` bytes (at least one file each).
  function batched(items, count, bytes) {
    var batches = [];
    var current = [];
    var size = 0;
    items.forEach(function (item) {
      if (current.length && (current.length >= count || size + item.file.size > bytes)) {
        batches.push(current);
        current = [];
        size = 0;
      }
      current.push(item);
      size += item.file.size;
    });
    if (current.length) batches.push(current);
    return batches;
  }

  // Not (yet) in the records: refused, not sent, or not answered for.
  function unsettled(item) {
    return item.state !== "stored" && item.state !== "already" && item.state !== "skipped";
  }

  function plural(count, one, many) {
    return count + " " + (count === 1 ? one : many);
  }

  function element(tag, text, className) {
    var made = document.createElement(tag);
    if (text) made.textContent = text;
    if (className) made.className = className;
    return made;
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
      var items = chosen(form);
      var skipped = chosen.systemFiles;
      if (!items.length || !window.FormData || !window.Promise) return;
      event.preventDefault();
      var batchFiles = parseInt(form.getAttribute("data-batch-files") || BATCH_FILES, 10);
      var parallel = parseInt(form.getAttribute("data-batch-parallel") || PARALLEL, 10);
      var batchBytes = chunkSize || 8 * 1024 * 1024;
      var token = (form.querySelector("input[name=_csrf_token]") || {}).value || "";
      var large = resumableUrl && chunkSize ? items.filter(function (i) { return i.file.size > chunkSize; }) : [];
      var small = items.filter(function (i) { return large.indexOf(i) < 0; });
      var total = items.reduce(function (sum, i) { return sum + i.file.size; }, 0) || 1;
      var finished = 0; // bytes of files, or chunks, the server has confirmed
      var sending = {}; // bytes of each request on its way
      var upload = { group: "", doneUploads: [], stopped: null, full: null, last: null };
      var previous = form.querySelector("[data-upload-summary]");
      if (previous) previous.parentNode.removeChild(previous);

      function show(inFlight) {
        var moving = inFlight || 0;
        Object.keys(sending).forEach(function (key) { moving += sending[key]; });
        var percent = Math.min(100, Math.round(((finished + moving) / total) * 100));
        bar.value = percent;
        return percent;
      }

      function progress() {
        var done = items.filter(function (i) { return i.state; }).length;
        var percent = show(0);
        say(items.length > 1 ? "Uploading… " + done + " of " + items.length + " files (" + percent + "%)" :
          "Uploading… " + percent + "%");
      }

      bar.hidden = false;
      bar.value = 0;
      if (button) button.disabled = true;
      say("Uploading…");

      var work = Promise.resolve();
      large.forEach(function (item) {
        work = work.then(function () {
          if (upload.stopped || upload.full) return null;
          return sendInChunks(item.file).then(
            function (made) {
              item.state = made.already ? "already" : "stored";
              upload.doneUploads.push(made.upload);
            },
            function (error) {
              if (error instanceof Refused) {
                item.state = "refused";
                item.reason = error.message;
                return;
              }
              throw error;
            }
          );
        });
      });
      work = work.then(function () { return sendBatches(batched(small, batchFiles, batchBytes)); });
      work.then(end, function (error) {
        upload.stopped = upload.stopped ||
          (error instanceof Stopped || error instanceof Refused ? error.message : "The upload did not work.");
        end();
      });

      function settle(reason) {
        items.forEach(function (item) {
          if (!item.state) {
            item.state = "unsent";
            item.reason = "Not sent: " + reason;
          }
        });
      }

      function end() {
        if (upload.stopped) settle(upload.stopped);
        if (upload.full) settle(upload.full);
        var missing = items.filter(unsettled);
        bar.hidden = true;
        if (button) button.disabled = false;
        var answer = upload.last ? parsed(upload.last) : null;
        var region = form.closest("[data-upload-region]");
        if (region && answer && answer.holder.querySelector("[data-upload-region]")) {
          var fresh = showInstead(region, answer.holder);
          if (missing.length) summarise(fresh, fresh.querySelector("[data-upload-result]"), null);
          return;
        }
        if (!missing.length) {
          say("Uploaded. Updating the list…");
          go(answer);
          return;
        }
        say("");
        var link = answer && answer.holder.querySelector("a[data-upload-next]");
        summarise(form, status, link ? link.getAttribute("href") :
          window.location.pathname + "?notice=records-left-out#records");
      }

      function go(answer) {
        var link = answer && answer.holder.querySelector("a[data-upload-next]");
        var next = link ? link.getAttribute("href") :
          window.location.pathname + "?notice=records-uploaded#records";
        var here = window.location.pathname + window.location.search;
        if (here === next.split("#")[0]) {
          window.location.reload(); // assigning the same URL would only move to its #fragment
        } else {
          window.location.assign(next);
        }
      }

      // Which files are in and which are not, and why, after `after` inside `holder`.
      function summarise(holder, after, next) {
        var stored = items.filter(function (i) { return i.state === "stored"; }).length;
        var already = items.filter(function (i) { return i.state === "already"; }).length;
        var system = skipped + items.filter(function (i) { return i.state === "skipped"; }).length;
        var counted = items.length - (system - skipped);
        var missing = items.filter(unsettled);
        var box = element("div", "", "notice notice-warning");
        box.setAttribute("data-upload-summary", "");
        box.setAttribute("role", "status");
        box.setAttribute("tabindex", "-1");
        var head = element("p");
        head.appendChild(element("strong", (stored + already) + " of " + plural(counted, "file is", "files are") +
          " in your records."));
        if (already) head.appendChild(document.createTextNode(" " + (already === 1 ? "1 of them was" : already + " of them were") +
          " there already, so we did not store " + (already === 1 ? "it" : "them") + " twice."));
        box.appendChild(head);
        box.appendChild(element("p", plural(missing.length, "file was", "files were") + " not stored:"));
        var reasons = {};
        var order = [];
        missing.forEach(function (item) {
          var reason = item.reason || "This file could not be saved.";
          if (!reasons[reason]) {
            reasons[reason] = [];
            order.push(reason);
          }
          reasons[reason].push(item.name);
        });
        var list = element("ul", "", "refused-files");
        order.forEach(function (reason) {
          var names = reasons[reason];
          var line = element("li");
          if (names.length === 1) {
            line.textContent = names[0] + " — " + reason;
          } else {
            line.appendChild(document.createTextNode(reason));
            var more = element("details");
            if (names.length <= SHOW_NAMES) more.open = true;
            more.appendChild(element("summary", names.length + " files, from " + names[0] + " to " +
              names[names.length - 1]));
            var all = element("ul", "", "plain-list");
            names.forEach(function (name) { all.appendChild(element("li", name)); });
            more.appendChild(all);
            line.appendChild(more);
          }
          list.appendChild(line);
        });
        box.appendChild(list);
        if (missing.some(function (i) { return i.state === "unsent"; })) {
          box.appendChild(element("p", "To send the files that were not sent, choose them (or the same folder) " +
            "again and upload: files we have already are recognised and not stored twice."));
        }
        if (system) {
          box.appendChild(element("p", (system === 1 ? "1 system file" : system + " system files") +
            " of the folder (such as .DS_Store or Thumbs.db) " + (system === 1 ? "was" : "were") +
            " left out: " + (system === 1 ? "it holds" : "they hold") + " nothing for the doctor.", "meta"));
        }
        if (next) {
          var see = element("p");
          var link = element("a", "See your records");
          link.href = next;
          see.appendChild(link);
          box.appendChild(see);
        }
        var details = holder.querySelector("[data-upload-details]");
        if (details) details.parentNode.removeChild(details); // said again, for every batch, here
        after.parentNode.insertBefore(box, after.nextSibling);
        box.focus();
      }

      // The server's answer replaces the region (the form's card); focus moves to its result.
      function showInstead(region, holder) {
        var fresh = holder.querySelector("[data-upload-region]") || holder;
        region.parentNode.replaceChild(fresh, region);
        Array.prototype.forEach.call(fresh.querySelectorAll("form[data-upload]"), enhance);
        var result = fresh.querySelector("[data-upload-result]");
        if (result) result.focus();
        return fresh;
      }

      function sendBatches(batches) {
        if (!batches.length) {
          // Only files sent in pieces: one request sums them up (the doctor's thank-you).
          return upload.doneUploads.length ? sendBatch([], true) : null;
        }
        var first = batches[0];
        var last = batches.length > 1 ? batches[batches.length - 1] : null;
        var middle = batches.slice(1, -1);
        return sendBatch(first, !last)
          .then(function () {
            var next = 0;
            function worker() {
              if (next >= middle.length || upload.stopped || upload.full) return null;
              var batch = middle[next++];
              // A batch that stops the upload lets the others on their way finish first.
              return sendBatch(batch, false).then(worker, function (error) {
                upload.stopped = upload.stopped || (error instanceof Stopped ? error.message :
                  "The upload did not work. Please try again.");
              });
            }
            var workers = [];
            for (var n = 0; n < Math.max(1, parallel); n++) workers.push(worker());
            return Promise.all(workers);
          })
          .then(function () { return last && !upload.stopped && !upload.full ? sendBatch(last, true) : null; });
      }

      function sendBatch(batch, isLast) {
        var attempt = 0;
        var key = String(Math.random());
        function fields() {
          var data = new FormData();
          new FormData(form).forEach(function (value, name) {
            if (name !== "file") data.append(name, value);
          });
          if (upload.group) data.append("upload_group", upload.group);
          if (isLast) {
            if (upload.doneUploads.length) data.append("done_uploads", upload.doneUploads.join(","));
            var earlier = items.filter(function (i) { return i.state === "stored" && i.document; })
              .map(function (i) { return i.document; });
            if (earlier.length) data.append("done_documents", earlier.join(","));
            var already = items.filter(function (i) { return i.state === "already" && batch.indexOf(i) < 0; }).length;
            if (already) data.append("done_already", String(already));
          }
          batch.forEach(function (item) { data.append("file", item.file, item.file.name); });
          return data;
        }
        var size = batch.reduce(function (sum, i) { return sum + i.file.size; }, 0);
        function once() {
          return send("POST", form.action, token, fields(), function (loaded) {
            sending[key] = Math.min(loaded, size);
            progress();
          }).then(function (answer) {
            delete sending[key];
            if (answer.status >= 500 && attempt++ < SERVER_RETRIES) {
              return sleep(1000 * attempt).then(once); // stored files are recognised the next time
            }
            return answer;
          }, function (error) {
            delete sending[key];
            throw error;
          });
        }
        return patiently(once).then(function (answer) {
          var found = parsed(answer).outcome;
          if (found && found.group) upload.group = found.group;
          if (found && found.files) {
            batch.forEach(function (item, index) {
              var result = found.files[index];
              if (!result) return;
              item.state = result.outcome;
              item.reason = result.reason || "";
              if (result.document) item.document = result.document;
              if (result.full) upload.full = result.reason;
            });
          }
          finished += batch.filter(function (i) { return i.state; })
            .reduce(function (sum, i) { return sum + i.file.size; }, 0);
          if (answer.status < 200 || answer.status >= 300) {
            if (!batch.length || !(found && found.files && found.files.length)) {
              throw new Stopped((found && found.stopped) || answer.text.replace(/<[^>]*>/g, " ").trim().slice(0, 300) ||
                "The upload did not work. Please try again.");
            }
            if (found && found.stopped) throw new Stopped(found.stopped);
          }
          if (isLast) upload.last = answer;
          progress();
          return answer;
        }, function (error) {
          if (!batch.length) return null; // only the sum-up of pieced uploads was lost: they are stored
          throw error;
        });
      }

      function memoryKey(file) {
        return "consilium-upload:" + resumableUrl + ":" + [file.name, file.size, file.lastModified].join(":");
      }

      function remembered(file) {
        try { return window.localStorage.getItem(memoryKey(file)); } catch (error) { return null; }
      }

      function remember(file, made) {
        try {
          if (made) window.localStorage.setItem(memoryKey(file), made);
          else window.localStorage.removeItem(memoryKey(file));
        } catch (error) { /* private browsing: resuming after a reload is then not possible */ }
      }

      // Asks again until the server answers: a lost connection is waited out, not reported.
      function patiently(what, attempt) {
        attempt = attempt || 0;
        return what().catch(function (error) {
          if (error instanceof Refused || error instanceof Stopped) throw error;
          if (attempt >= RETRY_LIMIT) {
            throw new Stopped("The connection was lost. What arrived is kept: choose the same files again to go on.");
          }
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
        var made = remembered(file);
        var resume = made
          ? send("GET", resumableUrl + "/" + made, token).then(function (answer) {
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
            if (answer.status === 404) throw new Stopped(answer.text || "This upload link is no longer valid.");
            if (answer.status !== 201) throw new Refused(answer.text || "The upload did not work.");
            var started = json(answer);
            remember(file, started.upload);
            return started;
          });
        });
      }

      // One large file in pieces; resolves with {upload, already}.
      function sendInChunks(file) {
        var base = finished;
        return patiently(function () { return begin(file); }).then(function (started) {
          var url = resumableUrl + "/" + started.upload;
          var already = false;
          function step(current) {
            finished = base + current.received_bytes;
            if (current.status === "done") {
              remember(file, null);
              finished = base + file.size;
              already = !!current.already;
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
              var lastPiece = number === current.chunks - 1;
              return send("PUT", url + "/chunks/" + number, token, piece, function (loaded) {
                if (lastPiece && loaded >= piece.size) say("Checking and saving " + file.name + "…");
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
          return Promise.resolve(step(started)).then(function () {
            return { upload: started.upload, already: already };
          });
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload]").forEach(enhance);
  });
})();
