// Niceties only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    var status = button.parentElement.querySelector(".copy-status");
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.replace(/\s+/g, "")).then(
        function () { if (status) status.textContent = button.getAttribute("data-copied"); },
        function () { if (status) status.textContent = button.getAttribute("data-copy-failed"); }
      );
    });
  });
});
