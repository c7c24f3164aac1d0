// The labeling screens: timer, heartbeat, skip, flag, drafts, ranking and submit.
// Model and prompt text is only ever moved around as DOM nodes or set with textContent.
//
// Each task kind is a "screen": a function that wires its part of the page and returns
//   ready() -> [ok, what is missing]   payload() -> the kind's submit fields
//   state() -> {text, data}            apply({text, data}) -> fill the form from a draft
// Drafts, read-only submitted tasks, the session-ended banner and submit are shared, so a
// new kind registers its screen with window.labelScreens[kind] = (ctx) => ({...}) from a
// deferred script and gets all of that.
(function () {
  "use strict";
  const root = document.getElementById("task");
  if (!root) return;
  const kind = root.dataset.kind;
  const taskId = Number(root.dataset.taskId);
  const aid = Number(root.dataset.assignmentId);
  const live = root.dataset.live === "1";
  const submitted = root.dataset.submitted === "1";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, el) => (el || document).querySelector(sel);
  const $$ = (sel, el) => Array.from((el || document).querySelectorAll(sel));
  const submitBtn = $("#submit");
  const missingEl = $("#missing");
  const statusEl = $("#save-status");
  const restoreEl = $("#restore");
  const restored = restoreEl ? JSON.parse(restoreEl.textContent || "null") : null;

  // A page restored from the back/forward cache may be out of date (e.g. submitted since).
  window.addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });

  // localStorage can be missing or full (private mode); the page must still work.
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* best effort */ } },
    del(k) { try { localStorage.removeItem(k); } catch (e) { /* best effort */ } },
  };

  function show(el, message) { el.textContent = message; el.hidden = !message; }
  const showError = (m) => show($("#error"), m);
  const showNotice = (m) => show($("#notice"), m);
  const typing = (el) => el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type === "text"));

  // The session ended while working: say so, keep the work, and offer a login that comes
  // back to this task (the draft kept in this browser is restored and saved then).
  function sessionEnded() {
    const box = $("#session-ended");
    if (box) box.hidden = false;
  }

  async function api(method, url, body, extra) {
    const init = Object.assign({
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
    }, extra || {});
    if (body !== undefined) init.body = JSON.stringify(body);
    try {
      const resp = await fetch(url, init);
      let data = {};
      try { data = await resp.json(); } catch (e) { /* empty body */ }
      if (resp.status === 401) sessionEnded();
      return { ok: resp.ok, status: resp.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: { detail: "Could not reach the server. Your work is kept here; try again." } };
    }
  }

  // --- the side panel fits the window wherever the page is scrolled, so what it ends
  // with (the rank screen's Submit) is always on screen ---------------------------------
  const side = $(".task-side");
  let fitQueued = false;
  function fitSide() {
    fitQueued = false;
    if (!side) return;
    if (getComputedStyle(side).position !== "sticky") { side.style.maxHeight = ""; return; }
    const top = Math.max(side.getBoundingClientRect().top, 0);
    side.style.maxHeight = Math.max(window.innerHeight - top - 12, 200) + "px";
  }
  const queueFit = () => { if (!fitQueued) { fitQueued = true; requestAnimationFrame(fitSide); } };
  window.addEventListener("scroll", queueFit, { passive: true });
  window.addEventListener("resize", queueFit);
  fitSide();

  // --- time on task: visible time only, kept across reloads -----------------------------
  const secKey = "label-seconds-" + aid;
  let seconds = Number(store.get(secKey)) || 0;
  const timerEl = $("#timer");
  function drawTimer() {
    const m = Math.floor(seconds / 60), s = seconds % 60;
    timerEl.textContent = m >= 60 ? Math.floor(m / 60) + ":" + String(m % 60).padStart(2, "0") + ":" + String(s).padStart(2, "0")
      : m + ":" + String(s).padStart(2, "0");
  }
  drawTimer();
  setInterval(() => {
    if (document.visibilityState !== "visible" || !live) return;
    seconds += 1;
    drawTimer();
    if (seconds % 5 === 0) store.set(secKey, String(seconds));
  }, 1000);

  // --- heartbeat: keep the lease while the page is open ---------------------------------
  if (live) {
    setInterval(async () => {
      const r = await api("POST", root.dataset.heartbeatUrl, {});
      if (r.status === 409 || r.status === 404) {
        showNotice("Your time on this task ran out. Anything you did is saved; go to the next task.");
      }
    }, 60 * 1000);
  }

  // --- idempotency: one key per assignment, stable across reloads and retries -----------
  const keyName = "label-key-" + aid;
  let key = store.get(keyName);
  if (!key) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    key = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    store.set(keyName, key);
  }

  function nextUrl(extra) {
    return "/label/next?kind=" + encodeURIComponent(root.dataset.pick || "any") + (extra || "");
  }

  // --- drafts: every kind, on the server (another device sees them), mirrored locally ---
  const draftKey = "label-draft-" + aid;
  const draftUrl = "/api/v1/assignments/" + aid + "/draft";
  let screen = null;
  let editedMs = restored && restored.client_ms ? restored.client_ms : 0;
  let savedJson = null, saveTimer = null, saving = null;

  function snapshot() { const s = screen.state(); return { text: s.text || "", data: s.data || {} }; }
  function changed() {
    if (!live || !screen) return;
    editedMs = Date.now();
    const now = snapshot();
    store.set(draftKey, JSON.stringify(Object.assign({ ms: editedMs }, now)));
    if (statusEl) statusEl.textContent = "Editing…";
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => { saving = save(); }, 1000);
    refresh();
  }
  async function save(keepalive) {
    clearTimeout(saveTimer);
    if (!live || !screen) return;
    const now = snapshot(), json = JSON.stringify(now);
    if (json === savedJson) return;
    const r = await api("PUT", draftUrl, { text: now.text, data: now.data, client_ms: editedMs },
      keepalive ? { keepalive: true } : undefined);
    if (r.ok) {
      savedJson = json;
      if (statusEl) statusEl.textContent = "Saved " + new Date().toLocaleTimeString();
    } else if (r.status === 0) {
      if (statusEl) statusEl.textContent = "Offline: kept in this browser, will retry";
      saveTimer = setTimeout(save, 5000);
    } else if (r.status === 401) {
      if (statusEl) statusEl.textContent = "Not saved: log in again (kept in this browser)";
    } else if (statusEl) {
      statusEl.textContent = r.data.detail || "Could not save the draft";
    }
  }
  function startDrafts() {
    savedJson = JSON.stringify(snapshot());
    const local = JSON.parse(store.get(draftKey) || "null");
    if (local && local.ms > editedMs && JSON.stringify({ text: local.text || "", data: local.data || {} }) !== savedJson) {
      screen.apply(local);
      editedMs = local.ms;
      showNotice("Restored work this browser kept while it could not be saved to the server.");
      setTimeout(save, 0);
    }
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") save(true); });
    window.addEventListener("pagehide", () => save(true));
    window.addEventListener("online", () => save());
  }

  // --- submit -------------------------------------------------------------------------
  let sending = false;
  const submitLabel = submitBtn ? $(".label", submitBtn) || submitBtn : null;
  function refresh() {
    if (!screen || !submitBtn) return;
    const [ok, missing] = screen.ready();
    submitBtn.disabled = !ok || sending || !live;
    if (missingEl) missingEl.textContent = live ? missing : "";
  }

  async function submit() {
    if (sending || !screen || !screen.ready()[0] || !live) return;
    sending = true;
    refresh();
    submitLabel.textContent = "Submitting…";
    showError("");
    const body = Object.assign(
      { assignment_id: aid, idempotency_key: key, seconds_spent: seconds }, screen.payload());
    const r = await api("POST", "/api/v1/tasks/" + taskId + "/submit", body);
    if (r.ok) {
      clearTimeout(saveTimer);
      savedJson = JSON.stringify(snapshot());
      [secKey, keyName, draftKey].forEach(store.del);
      submitLabel.textContent = "Submitted ✓";
      window.rlhfSubmitted(taskId);  // app.js: the next page confirms it
      location.assign(nextUrl());
      return;
    }
    sending = false;
    submitLabel.textContent = "Submit";
    refresh();
    if (r.status !== 401) showError(r.data.detail || "The submission was refused (" + r.status + ").");
  }

  // --- skip (with an optional reason; the next page offers an undo) and flag ------------
  const skipForm = $("#skip-form");
  if (skipForm) {
    skipForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      await save();
      const form = new FormData(skipForm);
      const reason = [form.get("reason") || "", (form.get("note") || "").trim()].filter(Boolean).join(": ");
      const r = await api("POST", root.dataset.skipUrl, { reason: reason.slice(0, 200) || null });
      if (!r.ok && r.status !== 409) { showError(r.data.detail || "Could not skip the task."); return; }
      [secKey, keyName].forEach(store.del);
      location.assign(nextUrl("&skipped=" + aid));
    });
  }
  const flagForm = $("#flag-form");
  if (flagForm) {
    flagForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = new FormData(flagForm);
      const r = await api("POST", "/api/v1/assignments/" + aid + "/flags",
        { reason: form.get("reason"), comment: form.get("comment") || "" });
      $("#flag-status").textContent = r.ok ? "Flag sent. Thank you." : (r.data.detail || "Could not send the flag.");
      if (r.ok) setTimeout(() => { $("#flag-menu").open = false; }, 1200);
    });
  }

  // --- keyboard ------------------------------------------------------------------------
  const keysDialog = $("#keys-dialog");
  function toggleKeys() {
    if (!keysDialog) return;
    if (keysDialog.open) keysDialog.close();
    else keysDialog.showModal();
  }
  $$("[data-open-keys]").forEach((b) => b.addEventListener("click", toggleKeys));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); return; }
    if (e.key === "?" && !typing(e.target)) { e.preventDefault(); toggleKeys(); }
  });
  if (submitBtn) submitBtn.addEventListener("click", submit);

  // --- outputs: Likert and flags (rank and rate) ---------------------------------------
  function outputs() { return $$(".output"); }
  function likertOf(card) { const c = $("input[type=radio]:checked", card); return c ? Number(c.value) : null; }
  function flagsOf(card) { return $$("input[type=checkbox]:checked", card).map((i) => i.value); }
  function drawFlagCount(card) {
    const n = flagsOf(card).length, badge = $(".flag-count", card);
    badge.textContent = String(n);
    badge.hidden = n === 0;
  }
  function wireOutputs() {
    outputs().forEach((card) => {
      card.addEventListener("change", () => { drawFlagCount(card); changed(); refresh(); });
      card.addEventListener("keydown", (e) => {
        if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey || !live) return;
        if (e.key >= "1" && e.key <= "7") {
          const radio = $('input[type=radio][value="' + e.key + '"]', card);
          radio.checked = true;
          radio.focus();
          radio.dispatchEvent(new Event("change", { bubbles: true }));
          e.preventDefault();
        }
      });
    });
  }
  function outputsState() {
    const likert = {}, flags = {};
    outputs().forEach((card) => {
      const v = likertOf(card);
      if (v) likert[card.dataset.cid] = v;
      const f = flagsOf(card);
      if (f.length) flags[card.dataset.cid] = f;
    });
    return { likert, flags };
  }
  function applyOutputs(data) {
    const likert = (data && data.likert) || {}, flags = (data && data.flags) || {};
    outputs().forEach((card) => {
      const cid = card.dataset.cid;
      $$("input[type=radio]", card).forEach((r) => { r.checked = Number(r.value) === Number(likert[cid]); });
      const on = new Set(Array.isArray(flags[cid]) ? flags[cid] : []);
      $$("input[type=checkbox]", card).forEach((c) => { c.checked = on.has(c.value); });
      drawFlagCount(card);
    });
  }
  function letters(cards) { return cards.map((c) => c.dataset.letter).join(", "); }

  function rateScreen() {
    wireOutputs();
    const card = outputs()[0], comment = $("#comment");
    comment.addEventListener("input", changed);
    return {
      ready() { return likertOf(card) ? [true, ""] : [false, "Give the output a Likert score."]; },
      payload() {
        return { likert: likertOf(card), flags: flagsOf(card), comment: comment.value };
      },
      state() { return { text: "", data: Object.assign(outputsState(), { comment: comment.value }) }; },
      apply(s) { applyOutputs(s.data); comment.value = (s.data && s.data.comment) || ""; },
    };
  }

  function rankScreen() {
    wireOutputs();
    const ranked = $("#ranked"), pool = $("#pool");
    const original = $$(".chip", pool);
    const chips = (list) => Array.from(list.children);
    let dragging = false;

    function renumber() {
      let place = 0;
      chips(ranked).forEach((chip, i) => {
        const tied = i > 0 && chip.dataset.tie === "1";
        if (!tied) place += 1;
        chip.classList.toggle("tied", tied);
        $(".tie", chip).setAttribute("aria-pressed", String(tied));
        $(".place", chip).textContent = place + ".";
        const badge = $(".place-badge", $("#out-" + chip.dataset.cid));
        badge.textContent = "Place " + place + (tied || (chips(ranked)[i + 1] || {}).dataset?.tie === "1" ? " (tie)" : "");
        badge.hidden = false;
        chip.setAttribute("aria-label", "Output " + $(".letter", chip).textContent + ", place " + place + (tied ? ", tied with the one above" : ""));
      });
      chips(pool).forEach((chip) => {
        chip.dataset.tie = "0";
        chip.classList.remove("tied");
        $(".place-badge", $("#out-" + chip.dataset.cid)).hidden = true;
        chip.setAttribute("aria-label", "Output " + $(".letter", chip).textContent + ", not placed");
      });
      refresh();
    }
    function moved() { renumber(); changed(); }
    // After an unplaced output is placed from the keyboard, focus goes on to the next
    // unplaced one (then to Submit), so a whole ranking is Enter / = presses in a row.
    function focusNext(chip) {
      const next = chips(pool)[0];
      if (next) next.focus();
      else if (submitBtn && !submitBtn.disabled) submitBtn.focus();
      else chip.focus();
    }
    function placeAt(chip, index, tie) {
      const others = chips(ranked).filter((c) => c !== chip);
      index = Math.max(0, Math.min(index, others.length));
      chip.dataset.tie = tie && index > 0 ? "1" : "0";
      ranked.insertBefore(chip, others[index] || null);
      moved();
    }
    function unplace(chip) {
      const sibling = chip.nextElementSibling || chip.previousElementSibling;
      chip.dataset.tie = "0";
      pool.appendChild(chip);
      moved();
      (sibling || chip).focus();
    }
    function toggleTie(chip) {
      if (chip.parentElement !== ranked || !chip.previousElementSibling) return;
      chip.dataset.tie = chip.dataset.tie === "1" ? "0" : "1";
      moved();
      chip.focus();
    }
    original.forEach((chip) => {
      chip.dataset.tie = "0";
      chip.addEventListener("click", (e) => {
        if (dragging || !live) return;
        if (e.target.closest(".tie")) { toggleTie(chip); return; }
        if (e.target.closest(".unplace")) { unplace(chip); return; }
        if (chip.parentElement === pool) placeAt(chip, ranked.children.length);  // tap to rank
      });
      chip.addEventListener("keydown", (e) => {
        if (e.ctrlKey || e.metaKey || e.altKey || e.target !== chip || !live) return;
        const inRanked = chip.parentElement === ranked;
        const idx = chips(chip.parentElement).indexOf(chip);
        let handled = true;
        if ((e.key === "Enter" || e.key === " ") && !inRanked) {
          placeAt(chip, ranked.children.length);
          focusNext(chip);
        } else if ((e.key === "=" || e.key === "t" || e.key === "T") && !inRanked) {
          placeAt(chip, ranked.children.length, true);  // the same place as the last one
          focusNext(chip);
        } else if (e.key === "ArrowUp" && inRanked) { placeAt(chip, idx - 1); chip.focus(); }
        else if (e.key === "ArrowDown" && inRanked) { placeAt(chip, idx + 1); chip.focus(); }
        else if (e.key === "ArrowUp" || e.key === "ArrowDown") {
          const next = chips(pool)[idx + (e.key === "ArrowUp" ? -1 : 1)];
          if (next) next.focus();
        } else if (e.key >= "1" && e.key <= "9") { placeAt(chip, Number(e.key) - 1); chip.focus(); }
        else if ((e.key === "=" || e.key === "t" || e.key === "T") && inRanked) toggleTie(chip);
        else if ((e.key === "Delete" || e.key === "Backspace" || e.key === "0") && inRanked) unplace(chip);
        else handled = false;
        if (handled) e.preventDefault();
      });
    });
    $("#reset").addEventListener("click", () => {
      original.forEach((chip) => { chip.dataset.tie = "0"; pool.appendChild(chip); });
      moved();
    });
    if (window.Sortable && live) {
      const options = {
        group: "rank", animation: 120, forceFallback: true, fallbackTolerance: 4,
        delayOnTouchOnly: true, delay: 120, filter: ".tie, .unplace", preventOnFilter: false,
        onStart() { dragging = true; },
        onEnd(evt) {
          if (evt.from !== evt.to || evt.oldIndex !== evt.newIndex) evt.item.dataset.tie = "0";
          moved();
          setTimeout(() => { dragging = false; }, 0);
        },
      };
      window.Sortable.create(ranked, options);
      window.Sortable.create(pool, options);
    }
    function groups() {
      const out = [];
      chips(ranked).forEach((chip, i) => {
        const cid = Number(chip.dataset.cid);
        if (i > 0 && chip.dataset.tie === "1") out[out.length - 1].push(cid);
        else out.push([cid]);
      });
      return out;
    }
    renumber();
    return {
      ready() {
        const unrated = outputs().filter((c) => !likertOf(c));
        const unplaced = chips(pool).map((c) => $("#out-" + c.dataset.cid));
        const parts = [];
        if (unrated.length) parts.push("a Likert score for " + letters(unrated));
        if (unplaced.length) parts.push("a place for " + letters(unplaced));
        return [parts.length === 0, parts.length ? "Still needed: " + parts.join("; ") + "." : ""];
      },
      payload() {
        const ratings = {};
        outputs().forEach((card) => {
          ratings[card.dataset.cid] = { likert: likertOf(card), flags: flagsOf(card) };
        });
        return { ranking: groups(), ratings };
      },
      state() { return { text: "", data: Object.assign(outputsState(), { ranking: groups() }) }; },
      apply(s) {
        applyOutputs(s.data);
        const byId = new Map(original.map((c) => [c.dataset.cid, c]));
        original.forEach((chip) => { chip.dataset.tie = "0"; pool.appendChild(chip); });
        const ranking = (s.data && Array.isArray(s.data.ranking)) ? s.data.ranking : [];
        ranking.forEach((group) => {
          (Array.isArray(group) ? group : []).forEach((cid, j) => {
            const chip = byId.get(String(cid));
            if (!chip || chip.parentElement === ranked) return;
            chip.dataset.tie = j > 0 ? "1" : "0";
            ranked.appendChild(chip);
          });
        });
        // Unplaced outputs keep their display order.
        original.filter((c) => c.parentElement === pool).forEach((c) => pool.appendChild(c));
        renumber();
      },
    };
  }

  // --- demonstrations and prompts: text with a character count ---------------------------
  function counter(ta) {
    const max = Number(ta.dataset.max), el = $("#char-count");
    const draw = () => {
      el.textContent = ta.value.length.toLocaleString() + " / " + max.toLocaleString() + " characters";
      el.classList.toggle("over", ta.value.length > max);
    };
    ta.addEventListener("input", draw);
    draw();
    return draw;
  }

  function demonstrateScreen() {
    const ta = $("#answer");
    const draw = counter(ta);
    ta.addEventListener("input", changed);
    return {
      ready() {
        const n = ta.value.length, max = Number(ta.dataset.max);
        if (!ta.value.trim()) return [false, "Write the response."];
        if (n > max) return [false, "Shorten the response to " + max.toLocaleString() + " characters."];
        return [true, ""];
      },
      payload() { return { text: ta.value }; },
      state() { return { text: ta.value, data: {} }; },
      apply(s) { ta.value = s.text || ""; draw(); },
    };
  }

  function writePromptScreen() {
    const ta = $("#answer"), promptKind = $("#prompt-kind").value;
    const box = $("#examples"), tpl = $("#example-template");
    const draw = counter(ta);
    ta.addEventListener("input", changed);
    function addExample(ex) {
      const node = tpl.content.firstElementChild.cloneNode(true);
      $(".ex-remove", node).addEventListener("click", () => { node.remove(); changed(); refresh(); });
      node.addEventListener("input", changed);
      if (ex) { $(".ex-input", node).value = ex.input || ""; $(".ex-output", node).value = ex.output || ""; }
      box.appendChild(node);
      refresh();
    }
    const examples = () => (box ? $$(".example", box).map((n) => ({
      input: $(".ex-input", n).value, output: $(".ex-output", n).value,
    })) : []);
    if (box) { $("#add-example").addEventListener("click", () => { addExample(); changed(); }); addExample(); }
    return {
      ready() {
        if (!ta.value.trim()) return [false, "Write the prompt."];
        const ex = examples();
        if (promptKind === "few_shot" && (!ex.length || ex.some((x) => !x.input.trim() || !x.output.trim()))) {
          return [false, "Fill in every example's input and output."];
        }
        return [true, ""];
      },
      payload() {
        const body = { text: ta.value, prompt_kind: promptKind };
        if (promptKind === "few_shot") body.examples = examples();
        return body;
      },
      state() { return { text: ta.value, data: box ? { examples: examples() } : {} }; },
      apply(s) {
        ta.value = s.text || "";
        draw();
        if (!box) return;
        const list = (s.data && Array.isArray(s.data.examples)) ? s.data.examples : [];
        box.replaceChildren();
        (list.length ? list : [null]).forEach(addExample);
      },
    };
  }

  const screens = window.labelScreens = Object.assign(
    { rank: rankScreen, rate: rateScreen, demonstrate: demonstrateScreen, write_prompt: writePromptScreen },
    window.labelScreens || {});

  // A submitted task: what was submitted, and nothing can change it.
  function readOnly() {
    $$("input, textarea, select, button", $(".task-grid")).forEach((el) => {
      if (el.closest("#guidelines")) return;
      el.disabled = true;
    });
    $$(".chip", root).forEach((c) => { c.removeAttribute("tabindex"); c.removeAttribute("role"); });
    [secKey, keyName, draftKey].forEach(store.del);
  }

  function start() {
    const make = screens[kind];
    if (!make) return;  // a kind whose page wires itself
    screen = make({ changed, refresh, live });
    if (restored && screen.apply) screen.apply(restored);
    if (submitted) readOnly();
    else if (live && screen.state) startDrafts();
    refresh();
  }
  // Deferred scripts (sortable.min.js, another kind's screen) have all run by then.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
