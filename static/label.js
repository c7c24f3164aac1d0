// The labeling screens: timer, heartbeat, skip, flag, drafts, ranking and submit.
// Model and prompt text is only ever moved around as DOM nodes or set with textContent.
(function () {
  "use strict";
  const root = document.getElementById("task");
  if (!root) return;
  const kind = root.dataset.kind;
  const taskId = Number(root.dataset.taskId);
  const aid = Number(root.dataset.assignmentId);
  const live = root.dataset.live === "1";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, el) => (el || document).querySelector(sel);
  const $$ = (sel, el) => Array.from((el || document).querySelectorAll(sel));
  const submitBtn = $("#submit");
  const missingEl = $("#missing");

  // localStorage can be missing or full (private mode); the page must still work.
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* best effort */ } },
    del(k) { try { localStorage.removeItem(k); } catch (e) { /* best effort */ } },
  };

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
      return { ok: resp.ok, status: resp.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: { detail: "Could not reach the server. Your work is kept here; try again." } };
    }
  }

  function show(el, message) { el.textContent = message; el.hidden = !message; }
  const showError = (m) => show($("#error"), m);
  const showNotice = (m) => show($("#notice"), m);
  const typing = (el) => el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type === "text"));

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
        showNotice("Your time on this task ran out. Anything you typed is saved; go to the next task.");
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

  function nextUrl() { return "/label/next?kind=" + encodeURIComponent(root.dataset.pick || "any"); }

  // --- the kind-specific part: each returns {ready() -> [ok, missing], payload(), done()} -
  let sending = false;
  let screen = null;
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
    submitBtn.textContent = "Submitting…";
    showError("");
    const body = Object.assign(
      { assignment_id: aid, idempotency_key: key, seconds_spent: seconds }, screen.payload());
    const r = await api("POST", "/api/v1/tasks/" + taskId + "/submit", body);
    if (r.ok) {
      [secKey, keyName].forEach(store.del);
      if (screen.done) screen.done();
      location.assign(nextUrl());
      return;
    }
    sending = false;
    submitBtn.textContent = "Submit";
    refresh();
    showError(r.data.detail || "The submission was refused (" + r.status + ").");
  }

  // --- skip and flag ---------------------------------------------------------------------
  $("#skip").addEventListener("click", async () => {
    if (screen && screen.flush) await screen.flush();
    const r = await api("POST", root.dataset.skipUrl, { reason: "skipped on the page" });
    if (!r.ok && r.status !== 409) { showError(r.data.detail || "Could not skip the task."); return; }
    [secKey, keyName].forEach(store.del);
    location.assign(nextUrl());
  });
  const flagForm = $("#flag-form");
  flagForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(flagForm);
    const r = await api("POST", "/api/v1/assignments/" + aid + "/flags",
      { reason: form.get("reason"), comment: form.get("comment") || "" });
    $("#flag-status").textContent = r.ok ? "Flag sent. Thank you." : (r.data.detail || "Could not send the flag.");
    if (r.ok) setTimeout(() => { $("#flag-menu").open = false; }, 1200);
  });

  // --- keyboard ------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); return; }
    if (e.key === "?" && !typing(e.target)) { const h = $("#shortcuts"); h.open = !h.open; }
  });
  if (submitBtn) submitBtn.addEventListener("click", submit);

  // --- outputs: Likert and flags (rank and rate) ---------------------------------------
  function outputs() { return $$(".output"); }
  function likertOf(card) { const c = $("input[type=radio]:checked", card); return c ? Number(c.value) : null; }
  function flagsOf(card) { return $$("input[type=checkbox]:checked", card).map((i) => i.value); }
  function wireOutputs() {
    outputs().forEach((card) => {
      card.addEventListener("change", () => {
        const n = flagsOf(card).length, badge = $(".flag-count", card);
        badge.textContent = String(n);
        badge.hidden = n === 0;
        refresh();
      });
      card.addEventListener("keydown", (e) => {
        if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
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
  function letters(cards) { return cards.map((c) => c.dataset.letter).join(", "); }

  function rateScreen() {
    wireOutputs();
    const card = outputs()[0];
    return {
      ready() { return likertOf(card) ? [true, ""] : [false, "Give the output a Likert score."]; },
      payload() {
        return { likert: likertOf(card), flags: flagsOf(card), comment: $("#comment").value };
      },
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
    function placeAt(chip, index) {
      const others = chips(ranked).filter((c) => c !== chip);
      index = Math.max(0, Math.min(index, others.length));
      chip.dataset.tie = "0";
      ranked.insertBefore(chip, others[index] || null);
      renumber();
      chip.focus();
    }
    function unplace(chip) {
      const sibling = chip.nextElementSibling || chip.previousElementSibling;
      chip.dataset.tie = "0";
      pool.appendChild(chip);
      renumber();
      (sibling || chip).focus();
    }
    function toggleTie(chip) {
      if (chip.parentElement !== ranked || !chip.previousElementSibling) return;
      chip.dataset.tie = chip.dataset.tie === "1" ? "0" : "1";
      renumber();
      chip.focus();
    }
    original.forEach((chip) => {
      chip.dataset.tie = "0";
      chip.addEventListener("click", (e) => {
        if (dragging) return;
        if (e.target.closest(".tie")) { toggleTie(chip); return; }
        if (e.target.closest(".unplace")) { unplace(chip); return; }
        if (chip.parentElement === pool) placeAt(chip, ranked.children.length);  // tap to rank
      });
      chip.addEventListener("keydown", (e) => {
        if (e.ctrlKey || e.metaKey || e.altKey || e.target !== chip) return;
        const inRanked = chip.parentElement === ranked;
        const idx = chips(chip.parentElement).indexOf(chip);
        let handled = true;
        if ((e.key === "Enter" || e.key === " ") && !inRanked) placeAt(chip, ranked.children.length);
        else if (e.key === "ArrowUp" && inRanked) placeAt(chip, idx - 1);
        else if (e.key === "ArrowDown" && inRanked) placeAt(chip, idx + 1);
        else if (e.key === "ArrowUp" || e.key === "ArrowDown") {
          const next = chips(pool)[idx + (e.key === "ArrowUp" ? -1 : 1)];
          if (next) next.focus();
        } else if (e.key >= "1" && e.key <= "9") placeAt(chip, Number(e.key) - 1);
        else if ((e.key === "=" || e.key === "t" || e.key === "T") && inRanked) toggleTie(chip);
        else if ((e.key === "Delete" || e.key === "Backspace" || e.key === "0") && inRanked) unplace(chip);
        else handled = false;
        if (handled) e.preventDefault();
      });
    });
    $("#reset").addEventListener("click", () => {
      original.forEach((chip) => { chip.dataset.tie = "0"; pool.appendChild(chip); });
      renumber();
    });
    if (window.Sortable) {
      const options = {
        group: "rank", animation: 120, forceFallback: true, fallbackTolerance: 4,
        delayOnTouchOnly: true, delay: 120, filter: ".tie, .unplace", preventOnFilter: false,
        onStart() { dragging = true; },
        onEnd(evt) {
          if (evt.from !== evt.to || evt.oldIndex !== evt.newIndex) evt.item.dataset.tie = "0";
          renumber();
          setTimeout(() => { dragging = false; }, 0);
        },
      };
      window.Sortable.create(ranked, options);
      window.Sortable.create(pool, options);
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
        const groups = [];
        chips(ranked).forEach((chip, i) => {
          const cid = Number(chip.dataset.cid);
          if (i > 0 && chip.dataset.tie === "1") groups[groups.length - 1].push(cid);
          else groups.push([cid]);
        });
        const ratings = {};
        outputs().forEach((card) => {
          ratings[card.dataset.cid] = { likert: likertOf(card), flags: flagsOf(card) };
        });
        return { ranking: groups, ratings };
      },
    };
  }

  // --- demonstrations: autosave to the server, localStorage while offline ------------------
  function counter(ta) {
    const max = Number(ta.dataset.max), el = $("#char-count");
    const draw = () => {
      el.textContent = ta.value.length.toLocaleString() + " / " + max.toLocaleString() + " characters";
      el.classList.toggle("over", ta.value.length > max);
    };
    ta.addEventListener("input", draw);
    draw();
  }

  function demonstrateScreen() {
    const ta = $("#answer"), status = $("#save-status");
    const draftKey = "label-draft-" + aid;
    const url = "/api/v1/assignments/" + aid + "/draft";
    let savedText = ta.value, editedMs = Number(ta.dataset.serverMs) || 0, timer = null, saving = null;
    counter(ta);
    const local = JSON.parse(store.get(draftKey) || "null");
    if (local && local.ms > editedMs && local.text !== ta.value) {
      ta.value = local.text;
      editedMs = local.ms;
      ta.dispatchEvent(new Event("input"));
      showNotice("Restored text this browser kept while the server could not be reached.");
      setTimeout(save, 0);
    }

    async function save(keepalive) {
      clearTimeout(timer);
      const text = ta.value, ms = editedMs;
      if (text === savedText) return;
      const r = await api("PUT", url, { text, client_ms: ms }, keepalive ? { keepalive: true } : undefined);
      if (r.ok) {
        savedText = text;
        status.textContent = "Saved " + new Date().toLocaleTimeString();
      } else if (r.status === 0) {
        status.textContent = "Offline: kept in this browser, will retry";
        timer = setTimeout(save, 5000);
      } else {
        status.textContent = r.data.detail || "Could not save the draft";
      }
    }
    ta.addEventListener("input", () => {
      editedMs = Date.now();
      store.set(draftKey, JSON.stringify({ text: ta.value, ms: editedMs }));
      status.textContent = "Editing…";
      clearTimeout(timer);
      timer = setTimeout(() => { saving = save(); }, 1200);
      refresh();
    });
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") save(true); });
    window.addEventListener("pagehide", () => save(true));
    window.addEventListener("online", () => save());
    return {
      ready() {
        const n = ta.value.length, max = Number(ta.dataset.max);
        if (!ta.value.trim()) return [false, "Write the response."];
        if (n > max) return [false, "Shorten the response to " + max.toLocaleString() + " characters."];
        return [true, ""];
      },
      payload() { return { text: ta.value }; },
      async flush() { await saving; await save(); },
      done() { clearTimeout(timer); savedText = ta.value; store.del(draftKey); },
    };
  }

  // --- labeler-written prompts -----------------------------------------------------------
  function writePromptScreen() {
    const ta = $("#answer"), promptKind = $("#prompt-kind").value;
    const box = $("#examples"), tpl = $("#example-template");
    counter(ta);
    ta.addEventListener("input", refresh);
    function addExample() {
      const node = tpl.content.firstElementChild.cloneNode(true);
      $(".ex-remove", node).addEventListener("click", () => { node.remove(); refresh(); });
      node.addEventListener("input", refresh);
      box.appendChild(node);
      refresh();
    }
    const examples = () => (box ? $$(".example", box).map((n) => ({
      input: $(".ex-input", n).value, output: $(".ex-output", n).value,
    })) : []);
    if (box) { $("#add-example").addEventListener("click", addExample); addExample(); }
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
    };
  }

  const screens = { rank: rankScreen, rate: rateScreen, demonstrate: demonstrateScreen, write_prompt: writePromptScreen };
  function start() { screen = screens[kind](); refresh(); }
  // sortable.min.js is deferred too and runs first; wait for it all the same.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
