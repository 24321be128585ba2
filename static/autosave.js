// Autosaving forms (the request wizard, the doctor's review): when a save cannot reach the
// server (a lost connection) or the server fails, say so in the form's status line. The text
// stays in the form, and the next keystroke tries again; nothing else is needed, so without
// this script the only loss is the message.
document.addEventListener("htmx:sendError", (event) => say(event, "Not saved: no connection. Your text is still here; it is saved when the connection is back."));
document.addEventListener("htmx:responseError", (event) => say(event, "Not saved: the server did not answer. Your text is still here; keep typing to try again."));

function say(event, text) {
  const form = event.target.closest("form");
  const status = form && form.querySelector("#autosave-status");
  if (status) {
    status.textContent = text;
  }
}
