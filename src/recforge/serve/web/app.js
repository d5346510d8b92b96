// recforge web page: plain JavaScript, no build step, talks only to this service's JSON API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const ratings = new Map(); // item_id -> {item, rating}
// Words for the items and their categories, from /health (named by the item metadata).
let nouns = { item: "item", items: "items", category: "category", categories: "categories" };

function applyNouns(given) {
  if (given) nouns = Object.assign({}, nouns, given);
  for (const el of document.querySelectorAll("[data-noun]")) {
    el.textContent = nouns[el.dataset.noun] || el.textContent;
  }
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// With RECFORGE_API_KEY set, every API call needs the key: asked for on the first 401 and kept in
// this tab's sessionStorage only (gone when the tab closes), sent as the X-API-Key header.
const KEY_SLOT = "recforge-api-key";

function withKey(options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  const key = sessionStorage.getItem(KEY_SLOT);
  if (key) opts.headers["X-API-Key"] = key;
  return opts;
}

async function api(path, options, retried = false) {
  let response;
  try {
    response = await fetch(path, withKey(options));
  } catch (err) {
    throw new Error("cannot reach the service: " + err.message);
  }
  if (response.status === 401 && !retried) {
    const key = window.prompt("This service needs an API key:");
    if (key && key.trim()) {
      sessionStorage.setItem(KEY_SLOT, key.trim());
      return api(path, options, true);
    }
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => d.msg).join("; ");
    }
    throw new Error(detail || "request failed with HTTP " + response.status);
  }
  return body;
}

function label(item) {
  const span = document.createElement("span");
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title || nouns.item + " " + item.item_id;
  span.appendChild(title);
  const bits = [];
  if (item.year) bits.push(item.year);
  if (item.genres && item.genres.length) bits.push(item.genres.join(", "));
  if (bits.length) {
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = " (" + bits.join(" · ") + ")";
    span.appendChild(meta);
  }
  return span;
}

function similarButton(item) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link similar-btn";
  b.textContent = "similar";
  b.addEventListener("click", () => loadSimilar(item));
  return b;
}

function stars(item) {
  const box = document.createElement("span");
  box.className = "stars";
  const current = ratings.has(item.item_id) ? ratings.get(item.item_id).rating : 0;
  for (let v = 1; v <= 5; v++) {
    const s = document.createElement("button");
    s.type = "button";
    s.className = "star" + (v <= current ? " on" : "");
    s.dataset.value = String(v);
    s.title = v + " star" + (v > 1 ? "s" : "");
    s.textContent = "★";
    s.addEventListener("click", () => rate(item, v));
    box.appendChild(s);
  }
  return box;
}

// "Because you rated X and Y": the rated items that raised this item's score most (explain=true).
// A sequential model may find none (leaving any one out raises the score: the item follows the
// list as a whole); it then says which of the person's items it read most (its attention), so
// every recommendation still carries a reason, labelled for what it is.
function becauseLine(item) {
  const because = item.because && item.because.length ? item.because : null;
  const read = !because && item.attention && item.attention.length ? item.attention : null;
  if (!because && !read) return null;
  const shown = because || read;
  const names = shown.slice(0, 2).map((b) => b.title || "item " + b.item_id);
  const div = document.createElement("div");
  div.className = "because muted";
  div.textContent = (because ? "Because you rated " : "Following ") + names.join(" and ") +
    (because ? "" : " in your list");
  const sign = because ? "+" : "attention ";
  div.title = shown.map((b) => (b.title || b.item_id) + ": " + sign + b.weight.toFixed(3)).join("\n");
  return div;
}

function fill(list, items, { withStars = false, withScore = false } = {}) {
  list.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    li.dataset.itemId = item.item_id;
    li.appendChild(label(item));
    li.appendChild(similarButton(item));
    if (withStars) li.appendChild(stars(item));
    if (withScore && typeof item.score === "number") {
      const sc = document.createElement("span");
      sc.className = "score";
      sc.textContent = item.score.toFixed(3);
      li.appendChild(sc);
    }
    const why = becauseLine(item);
    if (why) li.appendChild(why);
    list.appendChild(li);
  }
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted empty";
    li.textContent = "nothing found";
    list.appendChild(li);
  }
}

async function search(query) {
  clearError();
  try {
    const body = await api("/items?limit=15&query=" + encodeURIComponent(query));
    fill($("#results"), body.items, { withStars: true });
  } catch (err) {
    showError(err.message);
  }
}

function renderRated() {
  const list = $("#rated");
  const entries = [...ratings.values()];
  fill(list, entries.map((e) => e.item), { withStars: true });
  if (!entries.length) {
    list.replaceChildren();
    const li = document.createElement("li");
    li.className = "muted empty";
    li.textContent = "Rate a few " + nouns.items + " with the stars.";
    list.appendChild(li);
  }
}

async function rate(item, value) {
  ratings.set(item.item_id, { item, rating: value });
  renderRated();
  // Refresh the stars shown in the search results too.
  for (const li of document.querySelectorAll("#results li")) {
    if (li.dataset.itemId === item.item_id) {
      li.querySelectorAll(".star").forEach((s) => s.classList.toggle("on", Number(s.dataset.value) <= value));
    }
  }
  await recommend();
}

async function recommend() {
  clearError();
  if (!ratings.size) {
    $("#recs").replaceChildren();
    return;
  }
  const body = { ratings: {}, k: 10, explain: true };
  for (const [id, e] of ratings) body.ratings[id] = e.rating;

  // The order in which the person picked the items (a Map keeps insertion order): sequential
  // models read it as the history, oldest first.
  body.items = [...ratings.keys()];
  try {
    const res = await api("/recommendations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    fill($("#recs"), res.items, { withScore: true });
  } catch (err) {
    showError(err.message);
  }
}

async function loadSimilar(item) {
  clearError();
  $("#similar-of").textContent = "to " + (item.title || item.item_id);
  try {
    const res = await api("/items/" + encodeURIComponent(item.item_id) + "/similar?k=10");
    fill($("#similar"), res.items, { withScore: true });
  } catch (err) {
    $("#similar").replaceChildren();
    showError(err.message);
  }
}

async function loadUser(userId) {
  clearError();
  const id = encodeURIComponent(userId.trim());
  $("#history").replaceChildren();
  $("#user-recs").replaceChildren();
  if (!id) {
    showError("enter a user id");
    return;
  }
  try {
    const recs = await api("/users/" + id + "/recommendations?k=10&explain=true");
    fill($("#user-recs"), recs.items, { withScore: true });
    const hist = await api("/users/" + id + "/history");
    fill($("#history"), hist.items.slice(0, 15));
  } catch (err) {
    showError(err.message);
  }
}

async function init() {
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search($("#search").value);
  });
  $("#user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadUser($("#user-id").value);
  });
  $("#clear").addEventListener("click", () => {
    ratings.clear();
    renderRated();
    recommend();
  });
  try {
    const h = await api("/health");
    applyNouns(h.nouns);
    const counts = h.n_items ? `, ${h.n_items} ${nouns.items}` : "";
    $("#status").textContent = `${h.model_name || "model"} · ${h.model_version} · ${h.mode} mode${counts}`;
    document.body.dataset.ready = "1";
  } catch (err) {
    $("#status").textContent = "service unavailable";
    showError(err.message);
  }
}

init();
