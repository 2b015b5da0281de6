// The reviewers' console: keyboard shortcuts. Served by the binary (the
// Content-Security-Policy allows no inline script). Every action also
// works without this file: it only moves focus and clicks what is there.
"use strict";
(function () {
  const QUEUE = "custodian.queue";
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  const rows = () => Array.from(document.querySelectorAll("tr[data-href]"));
  let selected = -1;

  function select(i) {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((r, j) => r.classList.toggle("sel", j === selected));
    all[selected].scrollIntoView({ block: "nearest" });
  }

  // The queue page remembers its order, so an item page can go to the next one.
  const queue = document.querySelector("[data-queue-ids]");
  if (queue) {
    const ids = queue.getAttribute("data-queue-ids").split(" ").filter(Boolean);
    sessionStorage.setItem(QUEUE, JSON.stringify(ids));
    if (ids.length) select(0);
  }
  rows().forEach((r) => r.addEventListener("click", (e) => {
    if (!e.target.closest("a, button, form")) location.href = r.getAttribute("data-href");
  }));

  function neighbour(step) {
    const item = document.querySelector("[data-item-id]");
    if (!item) return null;
    let ids = [];
    try { ids = JSON.parse(sessionStorage.getItem(QUEUE) || "[]"); } catch (_) { ids = []; }
    const i = ids.indexOf(item.getAttribute("data-item-id"));
    const next = i < 0 ? null : ids[i + step];
    return next ? "/console/items/" + encodeURIComponent(next) : null;
  }

  function press(key) {
    // Only the keys the pages name: a pressed quote never reaches the selector.
    if (!/^[a-z\/]$/.test(key)) return false;
    const target = document.querySelector('[data-key="' + key + '"]');
    if (!target) return false;
    if (typing(target)) target.focus();
    else if (target.tagName === "DETAILS") target.open = !target.open;
    else {
      const ask = target.getAttribute("data-confirm");
      if (!ask || window.confirm(ask)) target.click();
    }
    return true;
  }

  // Buttons that need a second look (a confirmation that suspends) ask first.
  document.querySelectorAll("button[data-confirm]").forEach((b) => b.addEventListener("click", (e) => {
    if (e.isTrusted && !window.confirm(b.getAttribute("data-confirm"))) e.preventDefault();
  }));

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(document.activeElement)) {
      if (e.key === "Escape") document.activeElement.blur();
      return;
    }
    const onQueue = rows().length > 0;
    let handled = true;
    if (e.key === "?") {
      const help = document.getElementById("keys");
      if (help) help.hidden = !help.hidden;
    } else if (onQueue && (e.key === "j" || e.key === "k")) {
      select(selected + (e.key === "j" ? 1 : -1));
    } else if (onQueue && (e.key === "Enter" || e.key === "o") && selected >= 0
               && !e.target.closest("a, button, summary")) {
      location.href = rows()[selected].getAttribute("data-href");
    } else if (e.key === "j" || e.key === "k") {
      const to = neighbour(e.key === "j" ? 1 : -1);
      if (to) location.href = to; else handled = false;
    } else if (e.key === "u") {
      location.href = "/console/";
    } else {
      handled = press(e.key);
    }
    if (handled) e.preventDefault();
  });
})();
