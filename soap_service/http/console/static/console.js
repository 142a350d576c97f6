// Progressive enhancement only: every form works without this file.
// On the edit page, refresh the unsaved preview when typing pauses, by submitting the
// form's own "Preview without saving" button (which targets the sandboxed iframe).
(function () {
  "use strict";
  var button = document.getElementById("live-button");
  if (!button || !button.form || typeof button.form.requestSubmit !== "function") {
    return;
  }
  var timer = null;
  button.form.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(function () { button.form.requestSubmit(button); }, 700);
  });
}());
