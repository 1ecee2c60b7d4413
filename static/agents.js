// Copy buttons for the secret shown once: <button data-copy="input-id">.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const input = document.getElementById(button.dataset.copy);
    const note = button.parentElement.querySelector(".copied");
    input.select();
    const done = function () { if (note) note.textContent = "Copied."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {
        if (note) note.textContent = "Select it and copy by hand.";
      });
    } else if (document.execCommand("copy")) {
      done();
    }
  });
})();
