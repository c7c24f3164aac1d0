// The blind compare screen: answer (A / B / tie / both bad), optional Likert and flags per
// output, keyboard shortcuts, timer, heartbeat, skip and an idempotent submit.
(function () {
  "use strict";
  const root = document.getElementById("compare");
  if (!root) return;
  const taskId = Number(root.dataset.taskId);
  const aid = Number(root.dataset.assignmentId);
  const live = root.dataset.live === "1";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, el) => (el || document).querySelector(sel);
  const $$ = (sel, el) => Array.from((el || document).querySelectorAll(sel));
  const submitBtn = $("#submit");
  const errorEl = $("#error");
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* best effort */ } },
    del(k) { try { localStorage.removeItem(k); } catch (e) { /* best effort */ } },
  };

  async function api(method, url, body) {
    try {
      const resp = await fetch(url, {
        method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      });
      let data = {};
      try { data = await resp.json(); } catch (e) { /* empty body */ }
      return { ok: resp.ok, status: resp.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: { detail: "Could not reach the server; try again." } };
    }
  }
  function showError(message) { errorEl.textContent = message; errorEl.hidden = !message; }

  // time on task, kept across reloads
  const secKey = "compare-seconds-" + aid;
  let seconds = Number(store.get(secKey)) || 0;
  setInterval(() => {
    if (document.visibilityState !== "visible" || !live) return;
    seconds += 1;
    $("#timer").textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    if (seconds % 5 === 0) store.set(secKey, String(seconds));
  }, 1000);
  if (live) {
    setInterval(() => api("POST", "/api/v1/assignments/" + aid + "/heartbeat", {}), 60 * 1000);
  }

  // one idempotency key per assignment, stable across reloads and retries
  const keyName = "compare-key-" + aid;
  let key = store.get(keyName);
  if (!key) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    key = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    store.set(keyName, key);
  }

  const slots = $$(".compare-out");
  let focused = slots[0];
  function focusSlot(el) {
    slots.forEach((s) => s.classList.toggle("focused", s === el));
    focused = el;
    el.focus({ preventScroll: false });
  }
  slots.forEach((el) => el.addEventListener("click", () => focusSlot(el)));

  function choice() { const c = $('input[name="choice"]:checked'); return c ? c.value : null; }
  function refresh() {
    const ok = !!choice() && live;
    submitBtn.disabled = !ok || sending;
    $("#missing").textContent = choice() ? "" : "Choose an answer.";
  }
  $$('input[name="choice"]').forEach((el) => el.addEventListener("change", refresh));

  function ratings() {
    const out = {};
    for (const el of slots) {
      const slot = el.dataset.slot;
      const likert = $('input[name="likert-' + slot + '"]:checked', el);
      const flags = $$('input[name="flag-' + slot + '"]:checked', el).map((f) => f.value);
      if (!likert && flags.length) throw new Error("Give output " + slot + " a Likert score to keep its flags, or untick them.");
      if (likert) out[el.dataset.cid] = { likert: Number(likert.value), flags };
    }
    return out;
  }

  let sending = false;
  async function submit() {
    if (sending || !choice() || !live) return;
    let given;
    try { given = ratings(); } catch (e) { showError(e.message); return; }
    sending = true;
    refresh();
    showError("");
    submitBtn.textContent = "Submitting…";
    const r = await api("POST", "/api/v1/tasks/" + taskId + "/submit", {
      assignment_id: aid, idempotency_key: key, seconds_spent: seconds, choice: choice(), ratings: given,
    });
    if (r.ok) {
      [secKey, keyName].forEach(store.del);
      submitBtn.textContent = "Submitted ✓";
      window.rlhfSubmitted(taskId);  // app.js: the next page confirms it
      location.assign(r.data.next_url || "/label/next?kind=compare");
      return;
    }
    sending = false;
    submitBtn.textContent = "Submit";
    refresh();
    showError(r.data.detail || "The submission was refused (" + r.status + ").");
  }
  submitBtn.addEventListener("click", submit);

  $("#skip").addEventListener("click", async () => {
    const r = await api("POST", "/api/v1/assignments/" + aid + "/skip", { reason: "skipped on the page" });
    if (!r.ok && r.status !== 409) { showError(r.data.detail || "Could not skip."); return; }
    [secKey, keyName].forEach(store.del);
    location.assign("/label/next?kind=compare");
  });

  const answerKeys = { a: "a", b: "b", t: "tie", x: "both_bad" };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text"))) return;
    if (e.altKey || e.metaKey || (e.ctrlKey && e.key !== "Enter")) return;
    const k = e.key.toLowerCase();
    if (k === "enter") { e.preventDefault(); submit(); return; }
    if (answerKeys[k]) {
      const input = $('input[name="choice"][value="' + answerKeys[k] + '"]');
      input.checked = true;
      refresh();
      e.preventDefault();
      return;
    }
    if (k === "[" || k === "]") { focusSlot(slots[k === "[" ? 0 : 1]); e.preventDefault(); return; }
    if (/^[1-7]$/.test(k) && focused) {
      const input = $('input[name="likert-' + focused.dataset.slot + '"][value="' + k + '"]', focused);
      if (input) { input.checked = true; e.preventDefault(); }
      return;
    }
    if (k === "?") { const h = $("#shortcuts"); h.open = !h.open; }
  });
  refresh();
})();
