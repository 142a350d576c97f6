// Progressive enhancement only: every page and form works without this file.
(function () {
  "use strict";

  // Edit page: refresh the unsaved preview when typing pauses, by pressing the form's
  // own "Preview without saving" button (which targets the sandboxed iframe).
  var button = document.getElementById("live-button");
  var auto = document.getElementById("live-auto");
  if (button && auto && button.form && typeof button.form.requestSubmit === "function") {
    var timer = null;
    auto.parentNode.hidden = false;
    button.form.addEventListener("input", function (event) {
      if (timer) { clearTimeout(timer); }
      if (!auto.checked || event.target === auto) { return; }
      timer = setTimeout(function () { button.form.requestSubmit(button); }, 700);
    });
    button.form.addEventListener("submit", function (event) {
      if (event.submitter !== button && timer) { clearTimeout(timer); }
    });
  }

  // Monitoring: reload every N seconds, unless a threshold is being edited.
  var note = document.querySelector("[data-autorefresh]");
  if (note) {
    var seconds = parseInt(note.getAttribute("data-autorefresh"), 10) || 30;
    var editing = false;
    var hint = note.querySelector(".js-only");
    if (hint) { hint.hidden = false; }
    document.addEventListener("input", function () { editing = true; });
    setInterval(function () {
      var active = document.activeElement;
      var busy = active && (active.tagName === "INPUT" || active.tagName === "SELECT");
      if (!editing && !busy) { window.location.reload(); }
    }, seconds * 1000);
  }
}());
