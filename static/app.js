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

  // A labeler's submit moves straight on to the next task; that page says the last one
  // was saved, so nobody wonders whether the click took.
  const SUBMITTED = "rlhf-submitted";
  window.rlhfSubmitted = (taskId) => {
    try { sessionStorage.setItem(SUBMITTED, JSON.stringify({ task: taskId, at: Date.now() })); } catch (e) { /* private mode */ }
  };
  let last = null;
  try { last = JSON.parse(sessionStorage.getItem(SUBMITTED) || "null"); sessionStorage.removeItem(SUBMITTED); } catch (e) { last = null; }
  if (last && Date.now() - last.at < 60000) {
    document.addEventListener("DOMContentLoaded", () => {
      const toast = document.createElement("div");
      toast.className = "toast";
      toast.id = "submitted-toast";
      toast.setAttribute("role", "status");
      toast.textContent = "Submitted ✓ Task " + last.task + " is saved.";
      document.body.appendChild(toast);
      setTimeout(() => toast.classList.add("toast-gone"), 4000);
    });
  }
  const toggle = document.getElementById("menu-toggle");
  if (!toggle) return;
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.closest(".topbar").classList.toggle("menu-open", open);
  });
})();
