// movierec web page: plain JavaScript, no external assets. Text from the API is always set with
// textContent (never innerHTML), so a movie title cannot inject markup.
"use strict";

const state = { profile: null, ratings: new Map(), scale: [0.5, 5], model: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function api(method, path, body, auth) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state.profile) headers.Authorization = `Bearer ${state.profile.token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) {
    const error = new Error(payload.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return payload;
}

function query(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

// -- movies ----------------------------------------------------------------------------------
function metaText(movie) {
  const bits = [];
  if (movie.year) bits.push(String(movie.year));
  if (movie.genres && movie.genres.length) bits.push(movie.genres.join(", "));
  return bits.join(" · ");
}

function titleLink(movie) {
  return el("a", { class: "title", href: `#movie-${movie.item}`, onclick: (e) => { e.preventDefault(); openMovie(movie.item); } },
    movie.title);
}

function stars(movie) {
  const current = state.ratings.get(String(movie.item));
  const box = el("span", { class: "stars", "data-movie": String(movie.item), role: "group", "aria-label": `rate ${movie.title}` });
  for (let value = 1; value <= 5; value += 1) {
    const on = current !== undefined && value <= current;
    box.append(el("button", {
      class: on ? "star on" : "star", title: `${value} star${value > 1 ? "s" : ""}`, "data-value": String(value),
      onclick: () => rate(movie, value),
    }, "★"));
  }
  if (current !== undefined) {
    box.append(el("button", { class: "clear", title: "remove rating", onclick: () => unrate(movie) }, "✕"));
  }
  return box;
}

function movieItem(movie, extra) {
  return el("li", { "data-movie": String(movie.item) },
    el("div", { class: "movie-row" }, titleLink(movie), el("span", { class: "meta" }, metaText(movie)), extra));
}

function scoreText(score) {
  return state.model && state.model.predicts_ratings ? `predicted ${score.toFixed(2)}` : `score ${score.toFixed(3)}`;
}

function recItem(rec) {
  const item = movieItem(rec.movie, el("span", { class: "score" }, scoreText(rec.score)));
  if (rec.because && rec.because.length) {
    const names = rec.because.map((b) => `${b.movie.title} (${b.rating}★)`).join(", ");
    item.append(el("div", { class: "because" }, `because you rated ${names}`));
  }
  return item;
}

function renderList(target, items, render) {
  const node = $(target);
  node.replaceChildren(...items.map(render));
}

// -- profile ---------------------------------------------------------------------------------
function saveProfile() {
  if (state.profile) localStorage.setItem("movierec.profile", JSON.stringify(state.profile));
  else localStorage.removeItem("movierec.profile");
}

async function ensureProfile() {
  if (state.profile) return state.profile;
  state.profile = await api("POST", "/api/profiles", {});
  saveProfile();
  return state.profile;
}

async function loadProfile() {
  const stored = localStorage.getItem("movierec.profile");
  if (!stored) return refreshMine(null);
  try {
    state.profile = JSON.parse(stored);
    const profile = await api("GET", `/api/profiles/${encodeURIComponent(state.profile.id)}`, undefined, true);
    refreshMine(profile);
    await refreshRecs();
  } catch (error) {
    state.profile = null; // gone (a new database) or not ours: start afresh on the next rating
    saveProfile();
    refreshMine(null);
  }
}

function refreshMine(profile) {
  state.ratings = new Map();
  const rows = profile ? profile.ratings : [];
  for (const row of rows) state.ratings.set(String(row.movie.item), row.rating);
  $("rated-count").textContent = rows.length ? `(${rows.length})` : "";
  renderList("my-ratings", rows.slice().reverse(), (row) => movieItem(row.movie, stars(row.movie)));
  $("profile-note").textContent = profile ? `profile ${profile.id}, kept in this browser` : "Rate a movie to start a profile.";
  drawGenres(profile ? profile.genre_profile : []);
  // stars in other lists show the new state
  document.querySelectorAll("#search-results li, #dialog-stars").forEach((node) => {
    const holder = node.querySelector(".stars");
    if (holder && holder.movie) holder.replaceWith(withMovie(stars(holder.movie), holder.movie));
  });
}

function withMovie(node, movie) {
  node.movie = movie;
  return node;
}

async function rate(movie, value) {
  try {
    await ensureProfile();
    await api("PUT", `/api/profiles/${encodeURIComponent(state.profile.id)}/ratings/${encodeURIComponent(movie.item)}`,
      { rating: value }, true);
    await afterChange();
  } catch (error) {
    $("rec-error").textContent = error.message;
  }
}

async function unrate(movie) {
  try {
    await api("DELETE", `/api/profiles/${encodeURIComponent(state.profile.id)}/ratings/${encodeURIComponent(movie.item)}`,
      undefined, true);
    await afterChange();
  } catch (error) {
    $("rec-error").textContent = error.message;
  }
}

async function afterChange() {
  const profile = await api("GET", `/api/profiles/${encodeURIComponent(state.profile.id)}`, undefined, true);
  refreshMine(profile);
  await refreshRecs();
}

async function refreshRecs() {
  $("rec-error").textContent = "";
  if (!state.profile) return;
  try {
    const recs = await api("GET", `/api/profiles/${encodeURIComponent(state.profile.id)}/recommendations` +
      query({ k: 10, genres: $("rec-genres").value.trim(), years: $("rec-years").value.trim() }), undefined, true);
    renderList("recs", recs.recommendations, recItem);
    $("recs").dataset.rated = String(recs.rated);
  } catch (error) {
    $("rec-error").textContent = error.message;
  }
}

function drawGenres(rows) {
  const box = $("genre-chart");
  if (!rows.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Rate a few movies to see it."));
    return;
  }
  const ns = "http://www.w3.org/2000/svg";
  const shown = rows.slice(0, 12);
  const barHeight = 22, left = 110, width = 420;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(shown.length * barHeight + 10));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "ratings per genre");
  const most = Math.max(...shown.map((r) => r.count));
  shown.forEach((row, i) => {
    const y = 5 + i * barHeight;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "6"); label.setAttribute("y", String(y + 15)); label.setAttribute("font-size", "12");
    label.textContent = row.genre;
    const bar = document.createElementNS(ns, "rect");
    const length = Math.max(2, ((width - left - 80) * row.count) / most);
    bar.setAttribute("x", String(left)); bar.setAttribute("y", String(y + 3));
    bar.setAttribute("width", String(length)); bar.setAttribute("height", "14");
    // colour by mean rating: low = grey-blue, high = amber
    const t = (row.mean_rating - state.scale[0]) / Math.max(1e-9, state.scale[1] - state.scale[0]);
    bar.setAttribute("fill", `hsl(${210 - 170 * t}, 60%, ${55 - 10 * t}%)`);
    const value = document.createElementNS(ns, "text");
    value.setAttribute("x", String(left + length + 6)); value.setAttribute("y", String(y + 15)); value.setAttribute("font-size", "11");
    value.textContent = `${row.count} · avg ${row.mean_rating.toFixed(1)}★`;
    svg.append(label, bar, value);
  });
  box.replaceChildren(svg);
}

// -- search ----------------------------------------------------------------------------------
let searchTimer = null;
let searchSeq = 0;
function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const seq = ++searchSeq;
    const q = $("search").value.trim();
    try {
      const found = await api("GET", `/api/movies${query({ q, limit: 15 })}`);
      if (seq !== searchSeq) return; // a newer search answered first
      renderList("search-results", found.movies, (movie) => movieItem(movie, withMovie(stars(movie), movie)));
    } catch (error) {
      $("search-results").replaceChildren(el("li", { class: "error" }, error.message));
    }
  }, 180);
}

// -- one movie -------------------------------------------------------------------------------
async function openMovie(id) {
  const dialog = $("movie-dialog");
  try {
    const movie = await api("GET", `/api/movies/${encodeURIComponent(id)}`);
    $("dialog-title").textContent = movie.year ? `${movie.title} (${movie.year})` : movie.title;
    const mean = movie.mean_rating === null ? "" : `, average ${movie.mean_rating.toFixed(2)}★`;
    $("dialog-meta").textContent = `${movie.genres.join(", ") || "no genres"} · ${movie.ratings} ratings${mean}`;
    $("dialog-stars").replaceChildren(withMovie(stars(movie), movie));
    try {
      const similar = await api("GET", `/api/movies/${encodeURIComponent(id)}/similar?k=10`);
      renderList("dialog-similar", similar.similar, (row) => movieItem(row.movie, el("span", { class: "score" }, row.score.toFixed(3))));
    } catch (error) {
      $("dialog-similar").replaceChildren(el("li", { class: "muted" }, error.message));
    }
    if (!dialog.open) dialog.showModal();
  } catch (error) {
    alert(error.message);
  }
}

// -- MovieLens users -------------------------------------------------------------------------
async function showUser(id) {
  $("user-error").textContent = "";
  if (!id) return;
  try {
    const user = await api("GET", `/api/users/${encodeURIComponent(id)}?limit=200`);
    $("user-count").textContent = `(${user.ratings} ratings)`;
    renderList("user-history", user.history, (row) => movieItem(row.movie, el("span", { class: "score" }, `${row.rating}★`)));
    const recs = await api("GET", `/api/users/${encodeURIComponent(id)}/recommendations` +
      query({ k: 10, genres: $("user-genres").value.trim(), years: $("user-years").value.trim() }));
    renderList("user-recs", recs.recommendations, recItem);
  } catch (error) {
    $("user-error").textContent = error.message;
  }
}

async function randomUser() {
  const list = await api("GET", "/api/users?limit=1000");
  const pick = list.sample[Math.floor(Math.random() * list.sample.length)];
  $("user-id").value = String(pick);
  await showUser(String(pick));
}

// -- model -----------------------------------------------------------------------------------
function table(target, rows) {
  $(target).replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v)))));
}

async function loadModel() {
  const model = await api("GET", "/api/model");
  state.model = model;
  state.scale = model.scale;
  $("model-badge").textContent = `${model.model} · ${model.dataset || "own data"}`;
  table("model-info", [
    ["model", model.model], ["dataset", model.dataset || "—"], ["split", model.split || "—"],
    ["trained", model.trained || "—"], ["users", model.users], ["movies", model.movies],
    ["ratings", model.ratings], ["scale", `${model.scale[0]}–${model.scale[1]}`],
    ...Object.entries(model.params).map(([k, v]) => [k, v]),
  ]);
  const metrics = Object.entries(model.metrics);
  table("model-metrics", metrics.length ? metrics.map(([k, v]) => [k, v.toFixed(4)]) : [["metrics", "none recorded"]]);
  drawCurve(model.history);
}

function drawCurve(history) {
  const box = $("model-curve");
  const keys = history.length ? Object.keys(history[0]).filter((k) => k !== "epoch" && k !== "epochs" && typeof history[0][k] === "number") : [];
  if (!keys.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No training history recorded."));
    return;
  }
  const ns = "http://www.w3.org/2000/svg";
  const width = 480, height = 220, pad = 36;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(width)); svg.setAttribute("height", String(height));
  const colours = ["#b4540b", "#2d6cb4", "#3b8d3b", "#8d3b8d"];
  keys.slice(0, 4).forEach((key, j) => {
    const values = history.map((row) => row[key]).filter((v) => typeof v === "number");
    const lo = Math.min(...values), hi = Math.max(...values);
    const points = values.map((v, i) => {
      const x = pad + ((width - 2 * pad) * i) / Math.max(1, values.length - 1);
      const y = height - pad - ((height - 2 * pad) * (v - lo)) / Math.max(1e-12, hi - lo);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", colours[j]); line.setAttribute("stroke-width", "2");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(pad)); label.setAttribute("y", String(14 + 14 * j));
    label.setAttribute("font-size", "12"); label.setAttribute("fill", colours[j]);
    label.textContent = `${key}: ${values[0].toFixed(4)} → ${values[values.length - 1].toFixed(4)}`;
    svg.append(line, label);
  });
  box.replaceChildren(svg);
}

// -- wiring ----------------------------------------------------------------------------------
function switchTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === `tab-${name}`));
}

document.addEventListener("DOMContentLoaded", async () => {
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
  $("search").addEventListener("input", onSearch);
  $("rec-apply").addEventListener("click", refreshRecs);
  $("user-show").addEventListener("click", () => showUser($("user-id").value.trim()));
  $("user-id").addEventListener("keydown", (e) => { if (e.key === "Enter") showUser($("user-id").value.trim()); });
  $("user-random").addEventListener("click", randomUser);
  $("dialog-close").addEventListener("click", () => $("movie-dialog").close());
  try {
    await loadModel();
  } catch (error) {
    $("model-badge").textContent = `model unavailable: ${error.message}`;
  }
  onSearch(); // most-rated movies before anything is typed
  await loadProfile();
  document.body.dataset.ready = "1";
});
