// Every page: put a page rendered in answer to a form post at its own address, and open
// the navigation on a phone from a Menu button.
"use strict";
(function () {
  const here = document.querySelector('meta[name="page-url"]');
  if (here) {
    // A reload then shows the page instead of posting the form again.
    history.replaceState(history.state, "", here.content);
  }
  document.documentElement.classList.add("js");
  const toggle = document.getElementById("menu-toggle");
  if (!toggle) return;
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.closest(".topbar").classList.toggle("menu-open", open);
  });
})();
