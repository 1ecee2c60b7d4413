// Keyboard review of a batch: j/k move, a approve, r reject, ? help. No inline script:
// the page's CSP allows only files from this origin.
(function () {
  "use strict";
  const batch = document.getElementById("batch");
  if (!batch) return;
  const openUrl = batch.dataset.openUrl;
  const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
  const opened = new Set();
  let current = 0;

  function cards() { return Array.from(batch.querySelectorAll(".card[data-batch]")); }
  function open(card) {
    const id = card.dataset.id;
    if (opened.has(id)) return;
    opened.add(id);
    fetch(openUrl.replace("ID", encodeURIComponent(id)), {
      method: "POST", headers: { "X-CSRFToken": csrf }, credentials: "same-origin",
    });
  }
  function focus(index) {
    const list = cards();
    if (!list.length) return;
    current = Math.max(0, Math.min(index, list.length - 1));
    list.forEach((c, i) => c.classList.toggle("current", i === current));
    const card = list[current];
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "start", behavior: "smooth" });
    open(card);
  }
  function nextUndecided() {
    const list = cards();
    for (let i = 0; i < list.length; i++) {
      const j = (current + i) % list.length;
      if (!list[j].classList.contains("decided")) return focus(j);
    }
    focus(current);
  }
  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); cards()[current]?.focus(); }
      return;
    }
    const card = cards()[current];
    switch (event.key) {
      case "j": focus(current + 1); break;
      case "k": focus(current - 1); break;
      case "a": card?.querySelector("button.approve")?.click(); break;
      case "r": {
        const reason = card?.querySelector(".reject-form input[name=reason]");
        if (!reason) break;
        if (reason.value.trim()) card.querySelector("button.reject").click();
        else reason.focus();
        break;
      }
      case "?": {
        const help = document.getElementById("help");
        if (help.open) help.close(); else help.showModal();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });

  batch.addEventListener("focusin", function (event) {
    const card = event.target.closest(".card[data-batch]");
    if (!card) return;
    const index = cards().indexOf(card);
    if (index >= 0 && index !== current) {
      current = index;
      cards().forEach((c, i) => c.classList.toggle("current", i === current));
      open(card);
    }
  });
  // After a decision swaps a card, go on to the next one still undecided.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.closest && event.target.closest("#batch")) nextUndecided();
  });
  focus(0);
})();
