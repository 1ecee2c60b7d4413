// The batch and the item page: time in view per card, sent with each decision, the undo
// countdown, and the keyboard (j/k move, a approve, r reject, 1-4 quick picks, e more,
// u undo, n next batch, ? help).
// No inline script: the page's CSP allows only files from this origin.
(function () {
  "use strict";
  // A page brought back by the browser's back-forward cache shows claims as they were:
  // read it again (the pages are sent with Cache-Control: no-store as well).
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });

  // Start batch answers with the batch page itself (review/web/batch_pages.py): show the
  // page's own address, so a reload reads the batch (GET) instead of claiming again.
  const head = document.getElementById("batch-head");
  if (head && head.dataset.address &&
      window.location.pathname + window.location.search !== head.dataset.address) {
    window.history.replaceState(window.history.state, "", head.dataset.address);
  }

  // Start batch (form.start-batch on the queue and at the end of a batch): ask for the
  // batch page itself (answer=page) instead of the redirect a browser without JS gets,
  // which would cost a second request; the address is fixed above once it shows.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form.start-batch")) return;
    if (form.querySelector("input[name=answer]")) return;
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "answer";
    field.value = "page";
    form.appendChild(field);
  });

  const end = document.getElementById("batch-end");
  const root = document.getElementById("batch") || document.getElementById("item") || end;
  const shortcuts = document.body.dataset.shortcuts !== "off";

  // --- time in view ------------------------------------------------------------------
  // A card is in view while at least half of it, or half of the screen, shows it and the
  // tab is visible. The sum goes with the decision as seen_ms (review/reviewing/reading.py):
  // opening or selecting a card is not reading it.
  const seen = new Map(); // card id -> {ms, since, showing}

  function entryFor(id) {
    let r = seen.get(id);
    if (!r) { r = { ms: 0, since: null, showing: false }; seen.set(id, r); }
    return r;
  }
  function seenMs(id) {
    const r = seen.get(id);
    if (!r) return 0;
    return Math.round(r.ms + (r.since !== null ? performance.now() - r.since : 0));
  }
  function runClock(r, on, now) {
    if (on && r.since === null) r.since = now;
    if (!on && r.since !== null) { r.ms += now - r.since; r.since = null; }
  }
  const observer = new IntersectionObserver(function (entries) {
    const now = performance.now();
    for (const e of entries) {
      const screen = e.rootBounds ? e.rootBounds.height : window.innerHeight;
      const r = entryFor(e.target.dataset.id);
      r.showing = e.isIntersecting &&
        (e.intersectionRatio >= 0.5 || e.intersectionRect.height >= screen * 0.5);
      runClock(r, r.showing && document.visibilityState === "visible", now);
    }
  }, { threshold: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1] });
  document.addEventListener("visibilitychange", function () {
    const now = performance.now();
    const visible = document.visibilityState === "visible";
    seen.forEach(function (r) { runClock(r, r.showing && visible, now); });
  });
  function watch(scope) {
    scope.querySelectorAll("article.card[data-live]").forEach(function (c) { observer.observe(c); });
  }

  // Every decision carries its card's time in view; bulk decisions one field per item.
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.id === "live") { // the live poll: the cards still to decide, and
      // those taken from this page that have not ended yet (data-watch: live_pages.py)
      const live = document.querySelectorAll("article.card[data-live], article.card[data-watch]");
      event.detail.parameters["ids"] = Array.from(live, function (c) { return c.dataset.id; }).join(",");
      return;
    }
    const card = event.detail.elt.closest && event.detail.elt.closest("article.card");
    if (card) event.detail.parameters["seen_ms"] = String(seenMs(card.dataset.id));
  });
  // A poll sent while a card was still to decide can answer after this page decided it:
  // its folded card ("approved by you") would replace the decision's own answer (what the
  // reviewer just did, its receipt or undo bar), and its status line would speak of it.
  // The page's card is the truer one: the poll's news of a card that is no longer live or
  // watched here is dropped (the poll only asks after those, so nothing else is lost).
  const answeredHere = new Set();
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    const target = event.detail.target;
    if (target.matches("article.card[data-id]")) {
      if (!target.hasAttribute("data-live") && !target.hasAttribute("data-watch")) {
        answeredHere.add(target.dataset.id);
        event.detail.shouldSwap = false;
      }
    } else if (target.id === "decision-status") {
      const about = event.detail.fragment.querySelector("[data-about]");
      if (about && answeredHere.has(about.dataset.about)) event.detail.shouldSwap = false;
    }
  });
  const bulk = document.getElementById("bulk");
  if (bulk) {
    bulk.addEventListener("submit", function () {
      bulk.querySelectorAll("input.seen").forEach(function (i) { i.remove(); });
      document.querySelectorAll("input[name=ids][form=bulk]:checked").forEach(function (box) {
        const field = document.createElement("input");
        field.type = "hidden";
        field.className = "seen";
        field.name = "seen_ms." + box.value;
        field.value = String(seenMs(box.value));
        bulk.appendChild(field);
      });
    });
  }

  if (!root) return;
  watch(root);

  // --- moving through the batch --------------------------------------------------------
  let current = 0;
  function cards() { return Array.from(root.querySelectorAll("article.card")); }
  function focus(index) {
    const list = cards();
    if (!list.length) return;
    current = Math.max(0, Math.min(index, list.length - 1));
    list.forEach(function (c, i) { c.classList.toggle("current", i === current); });
    const card = list[current];
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "start" });
  }
  const OUTCOMES = {
    approved: "Approved", rejected: "Rejected", pending: "First of two approvals",
    expired: "Expired", killed: "Killed", cancelled: "Cancelled", in_review: "Held by another reviewer",
  };
  function showEnd() {
    if (!end) return;
    const list = document.getElementById("end-list");
    list.replaceChildren();
    cards().forEach(function (c) {
      const item = document.createElement("li");
      const word = document.createElement("strong");
      word.textContent = (OUTCOMES[c.dataset.outcome] || c.dataset.outcome || "") + ": ";
      item.append(word, c.querySelector(".summary").textContent);
      list.appendChild(item);
    });
    end.hidden = false;
    end.scrollIntoView({ block: "nearest" });
    document.getElementById("next-batch").focus();
  }
  function nextUndecided() {
    const list = cards();
    for (let i = 0; i < list.length; i++) {
      const j = (current + i) % list.length;
      if (list[j].hasAttribute("data-live")) return focus(j);
    }
    if (document.getElementById("batch")) showEnd();
  }

  // --- undo ------------------------------------------------------------------------------
  // A decision in its undo window shows "Approved — Undo (5)": the count follows the
  // server's window (data-undo-ms when the card came), and when it ends the card asks
  // for itself again (hx-get in review/card/_bar.html) and shows what took effect.
  // `u` undoes the newest decision whose countdown still runs.
  const held = []; // card ids, in the order decided
  function countDown(card) {
    const bar = card.querySelector(".undo-bar[data-undo-ms]");
    if (!bar) return;
    if (!held.includes(card.dataset.id)) held.push(card.dataset.id);
    const until = performance.now() + Number(bar.dataset.undoMs);
    const shown = bar.querySelector(".countdown");
    const timer = setInterval(function () {
      const left = Math.max(0, Math.ceil((until - performance.now()) / 1000));
      if (!bar.isConnected || left === 0) {
        clearInterval(timer);
        if (bar.isConnected) bar.querySelector("button.undo").disabled = true;
        return;
      }
      shown.textContent = "(" + left + ")";
    }, 200);
  }
  document.querySelectorAll("article.card[data-held]").forEach(countDown);
  function undoLast() {
    while (held.length) {
      const card = document.getElementById("card-" + held[held.length - 1]);
      const button = card && card.querySelector("button.undo:not([disabled])");
      if (button) { button.click(); return true; }
      held.pop();
    }
    return false;
  }

  // After a decision swaps a card: a refused one keeps its form, focus on the reason;
  // an undone one comes back with its controls and the focus; otherwise on to the next
  // card still undecided, or the end of the batch.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    const card = event.detail.elt;
    if (!card || !card.matches || !card.matches("article.card")) return;
    if (card.hasAttribute("data-held")) countDown(card);
    const config = event.detail.requestConfig;
    if (config && config.verb === "get") return; // a card refreshed itself: focus stays
    const index = cards().indexOf(card);
    if (index >= 0) current = index;
    if (card.hasAttribute("data-live") && card.hasAttribute("data-undone")) {
      observer.observe(card);
      if (end && document.getElementById("batch")) end.hidden = true; // not done after all
      focus(index);
    } else if (card.hasAttribute("data-live")) {
      observer.observe(card);
      card.classList.add("current");
      card.querySelector(".reject-form input[name=reason]").focus();
    } else {
      nextUndecided();
    }
  });

  // After the live poll replaced cards (decided, killed or taken elsewhere: out-of-band
  // swaps, done before the poll's own): when the current card is no longer live, on to
  // the next card still undecided, or the end of the batch.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "live") return;
    const card = cards()[current];
    if (card && !card.hasAttribute("data-live")) nextUndecided();
  });

  root.addEventListener("focusin", function (event) {
    const card = event.target.closest("article.card");
    const index = card ? cards().indexOf(card) : -1;
    if (index >= 0 && index !== current) {
      current = index;
      cards().forEach(function (c, i) { c.classList.toggle("current", i === current); });
    }
  });

  // --- keys ----------------------------------------------------------------------------
  // While a decision is on its way, keys wait: the next one belongs to the next card.
  // (Only a decision's or an undo's request: not the live poll, not a card reading itself.)
  let busy = false;
  function ownRequest(event) {
    const elt = event.detail.elt;
    return !(elt && (elt.id === "live" || elt.classList.contains("refresh")));
  }
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (ownRequest(event)) busy = true;
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (ownRequest(event)) busy = false;
  });
  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }
  function quickPick(field, key) {
    const picks = field.form.querySelectorAll(".quick button");
    const n = Number(key);
    if (field.value !== "" || !(n >= 1 && n <= picks.length)) return false;
    picks[n - 1].click();
    return true;
  }
  const help = document.getElementById("help");
  const keysButton = document.getElementById("show-keys");
  if (keysButton && help) keysButton.addEventListener("click", function () { help.showModal(); });

  if (shortcuts) {
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (busy && event.key !== "Escape") { event.preventDefault(); return; }
      if (typing(event.target)) {
        if (event.key === "Escape") { event.target.blur(); cards()[current]?.focus(); }
        else if (event.target.matches(".reject-form input[name=reason]") && quickPick(event.target, event.key)) {
          event.preventDefault();
        }
        return;
      }
      if (help && help.open) return;
      const card = cards()[current];
      switch (event.key) {
        case "j": focus(current + 1); break;
        case "k": focus(current - 1); break;
        case "a": card?.querySelector("button.approve")?.click(); break;
        case "r": {
          const reason = card?.querySelector(".reject-form input[name=reason]");
          if (!reason) return;
          if (reason.value.trim()) card.querySelector("button.reject").click();
          else reason.focus();
          break;
        }
        case "u": if (!undoLast()) return; break;
        case "e": {
          const more = card?.querySelector("details.more");
          if (!more) return;
          more.open = !more.open;
          break;
        }
        case "n": {
          if (!end || end.hidden) return;
          document.getElementById("next-batch").click();
          break;
        }
        case "?": if (help) help.showModal(); break;
        default: return;
      }
      event.preventDefault();
    });
  }
  if (cards().some(function (c) { return c.hasAttribute("data-live"); })) focus(0);
  else if (document.getElementById("batch") && end && end.hidden) showEnd();
  else if (end && !end.hidden) document.getElementById("next-batch").focus();
})();
