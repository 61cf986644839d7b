// sm-gossip's dashboard (docs/ui.md): plain JavaScript, no build step, no outside assets.
// Every JSON read is an operation of the local API under /ui (GET /ui/v1/peers, ...);
// the change feed (/ui/v1/events) says when to read again. Every text from the data is
// put into the page as text (textContent, text nodes), never parsed as HTML.

const PAGES = ["host", "memories", "breakers", "benchmarks", "keys"];
const state = { page: "host", names: {}, me: null, timer: null, dirty: new Set(PAGES) };

// -- building the page ------------------------------------------------------------------

// An element; props: class, title, label (a table cell's label at phone width), hidden.
// Children: elements, or strings (text nodes: never HTML).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "title") e.title = String(v);
    else if (k === "label") e.dataset.label = String(v);
    else if (k === "hidden") e.hidden = Boolean(v);
    else throw new Error(`el: unknown property ${k}`);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function replace(container, children) {
  container.replaceChildren(...children);
}

function badge(text, tone) {
  return el("span", { class: `badge ${tone || ""}` }, text);
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "never";
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  if (Math.abs(s) < 2) return "just now";
  const text = (n) => (n < 90 ? `${n} s` : n < 5400 ? `${Math.round(n / 60)} min`
    : n < 129600 ? `${Math.round(n / 3600)} h` : `${Math.round(n / 86400)} d`);
  return s >= 0 ? `${text(s)} ago` : `in ${text(-s)}`;
}

function short(id) {
  return id ? `${id.slice(0, 8)}…` : "?";
}

// An author or peer: its name (keyring, or inherited), else the start of its id.
function who(id) {
  if (!id) return el("span", {}, "?");
  const name = id === state.me ? "this host" : state.names[id];
  return el("span", { title: id }, name || short(id));
}

// -- reading the operations -------------------------------------------------------------

class LoggedOut extends Error {}

async function get(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  }
  const qs = query.toString();
  const url = `/ui/v1/${path}${qs ? `?${qs}` : ""}`;
  const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (resp.status === 401) throw new LoggedOut();
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

function banner(text) {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.textContent = text || "";
}

async function names() {
  const keys = await get("trust");
  state.names = {};
  for (const k of keys) {
    if (k.name) state.names[k.id] = k.name;
    if (k.self) state.me = k.id;
  }
  return keys;
}

// -- pages ------------------------------------------------------------------------------

// What a peer's state means, in the words people use.
const PEER_STATES = {
  alive: ["Connected", "ok"], suspect: ["Connecting", "warn"], down: ["Unreachable", "bad"],
  left: ["Left", ""], "unknown-key": ["Not trusted", "bad"], "not-running": ["Not running", ""],
};

// How a peer stands against this host, as `gossip peers` says it: up to date, N behind
// (it lacks N records we hold), N ahead (it held N we lack), unknown (never learned).
function inSync(p) {
  if (p.they_lack === null || p.they_lack === undefined || p.we_lack === null) return "unknown";
  const words = [];
  if (p.they_lack) words.push(`${p.they_lack} behind`);
  if (p.we_lack) words.push(`${p.we_lack} ahead`);
  return words.join(", ") || "up to date";
}

function sync(p) {
  const words = inSync(p);
  const tone = words === "up to date" ? "ok" : words === "unknown" ? "" : "warn";
  return el("span", {}, badge(words, tone),
    p.sv_at ? el("span", { class: "sub", title: when(p.sv_at) }, `as of ${ago(p.sv_at)}`) : "");
}

async function showHost() {
  const [st, peers] = await Promise.all([get("status"), get("peers"), names()]);
  document.getElementById("host-name").textContent = st.name ? `· ${st.name}` : "";
  const rec = st.records || {};
  const facts = [
    ["Name", st.name || "-"], ["Id", el("span", { class: "id", title: st.id }, short(st.id))],
    ["Peer address", st.address || "-"], ["Profile", st.profile || "-"],
    ["Transport", st.transport || "-"],
    ["Peers", `${st.peers.alive} connected of ${st.peers.total}`],
    ["Records", `${rec.total} (${rec.trusted} trusted, ${rec.untrusted} untrusted)`],
    ["Keyring", `${st.keyring} keys`], ["Store", `${Math.round(st.store_bytes / 1024)} KiB`],
    ["Last exchange", ago(st.last_exchange)],
  ];
  replace(document.getElementById("status"),
    facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  replace(document.getElementById("warnings"), st.warnings.map((w) => el("li", {}, w)));
  const rows = peers.map((p) => {
    const [word, tone] = PEER_STATES[p.state] || [p.state, ""];
    const found = [p.source, ...(p.sources || []).filter((s) => s !== p.source)].join(", ");
    return el("tr", {},
      el("td", { label: "Peer" }, p.key ? who(p.key) : "?", el("span", { class: "sub" }, p.address)),
      el("td", { label: "State" }, badge(word, tone)),
      el("td", { label: "Reason" }, p.reason || "-"),
      el("td", { label: "Last seen", title: when(p.last_seen) }, ago(p.last_seen)),
      el("td", { label: "RTT" }, p.rtt_ms === null ? "-" : `${Math.round(p.rtt_ms)} ms`),
      el("td", { label: "Sync" }, sync(p)),
      el("td", { label: "Transport" }, p.transport || "-"),
      el("td", { label: "Found by" }, found));
  });
  replace(document.querySelector("#peers tbody"), rows);
  document.getElementById("peers").hidden = !rows.length;
  document.getElementById("peers-empty").hidden = Boolean(rows.length);
}

let filtersReady = false;

async function fillFilters() {
  const form = document.getElementById("filters");
  const keys = await names();
  const banks = await get("banks");
  const bank = form.elements.bank;
  const chosen = bank.value || "default";
  replace(bank, banks.banks.map((b) => el("option", {}, b.bank_id)));
  bank.value = chosen;
  const author = form.elements.author;
  const picked = author.value;
  replace(author, [el("option", {}, "any"), ...keys.map((k) => el("option", { title: k.id },
    k.self ? "this host" : k.name || short(k.id)))]);
  // option values: the id, set as a property (never as markup)
  author.options[0].value = "";
  keys.forEach((k, i) => { author.options[i + 1].value = k.id; });
  author.value = picked;
  filtersReady = true;
}

async function showMemories() {
  if (!filtersReady) await fillFilters();
  const f = document.getElementById("filters").elements;
  const trust = f.trust.value;
  const found = await get("memories", {
    q: f.q.value.trim(), bank: f.bank.value, category: f.category.value.trim(),
    author: f.author.value, include_untrusted: trust !== "trusted", limit: 50,
  });
  const memories = found.memories.filter((m) => trust !== "untrusted" || !m.trusted);
  const note = [found.mode !== "hybrid" && f.q.value.trim() ? `recall by ${found.mode}` : "", found.note || ""];
  document.getElementById("memories-note").textContent = note.filter(Boolean).join(" — ");
  const cards = memories.map(memoryCard);
  replace(document.getElementById("memories"), cards);
  document.getElementById("memories-empty").hidden = Boolean(cards.length);
  await Promise.all(memories.map((m, i) => provenance(m.id, cards[i])));
}

function memoryCard(m) {
  const tags = [el("span", { class: "tag category" }, m.category)];
  if (m.subject) tags.push(el("span", { class: "tag" }, m.subject));
  for (const t of m.tags) tags.push(el("span", { class: "tag" }, `#${t}`));
  if (m.bank && m.bank !== "default") tags.push(el("span", { class: "tag" }, `bank ${m.bank}`));
  return el("li", { class: `card${m.trusted ? "" : " untrusted"}` },
    el("p", { class: "text" }, m.text),
    el("div", { class: "tags" }, tags),
    el("div", { class: "who" }, "signed by ", who(m.author), ` · ${when(m.ts)} · `,
      m.trusted ? badge("trusted", "ok") : badge("untrusted", "bad"),
      m.expires_at ? ` · expires ${ago(m.expires_at)}` : ""),
    el("div", { class: "prov" }, "…"));
}

// Each memory's provenance and delivery (`memory`): drawn at once from the last answer,
// then again from a fresh one (delivery changes as peers catch up).
const shownCache = new Map();

async function provenance(id, card) {
  if (shownCache.has(id)) drawProvenance(shownCache.get(id), card);
  const shown = await get(`memories/${encodeURIComponent(id)}`).catch(() => null);
  if (!shown) return;
  if (shownCache.size > 500) shownCache.clear();
  shownCache.set(id, shown);
  drawProvenance(shown, card);
}

function drawProvenance(shown, card) {
  const p = shown.provenance;
  const parts = [];
  if (p.local) parts.push(el("span", {}, "written on this host"));
  else if (p.source) {
    const from = p.source.startsWith("import:") ? p.source : who(p.source);
    parts.push(el("span", {}, "delivered by ", from, ` ${ago(p.received_at)}`));
  }
  parts.push(el("span", {}, shown.signature_ok ? "signature ok" : "BAD SIGNATURE"));
  if (shown.retracted_by.length) parts.push(el("span", {}, "retracted"));
  if (shown.supersedes) parts.push(el("span", {}, shown.supersedes.note));
  replace(card.querySelector(".prov"), parts);
  const delivery = shown.delivery || [];
  card.querySelector(".delivery")?.remove();
  if (delivery.length) {
    card.append(el("div", { class: "delivery" }, "peers: ", delivery.map((d, i) => [i ? " · " : "",
      el("span", { class: d.has === true ? "has" : d.has === false ? "lacks" : "unknown",
        title: d.as_of ? `as of ${when(d.as_of)}` : "its state was never learned" },
        d.key ? who(d.key) : d.name || d.address,
        d.has === true ? " has it" : d.has === false ? ` not yet (${ago(d.as_of)})` : " unknown")])));
  }
}

const BREAKER_TONES = { open: "bad", half_open: "warn", closed: "ok", unknown: "" };

async function showBreakers() {
  await names();
  const untrusted = document.getElementById("breakers-untrusted").checked;
  const found = await get("breakers", { include_untrusted: untrusted });
  const rows = found.map((b) => el("tr", {},
    el("td", { label: "Breaker" }, b.name),
    el("td", { label: "State" }, badge(b.state.replace("_", "-"), BREAKER_TONES[b.state])),
    el("td", { label: "Tripped by" }, b.tripped_by.length ? b.tripped_by.map((a, i) => [i ? ", " : "", who(a)]) : "-"),
    el("td", { label: "Reason" }, b.reason || "-"),
    el("td", { label: "Until", title: when(b.resets_at) }, b.resets_at ? `${when(b.resets_at)} (${ago(b.resets_at)})` : "-"),
    el("td", { label: "Hosts say" }, el("ul", { class: "obs" }, b.observations.map((o) => el("li", {},
      who(o.author), `: ${o.state.replace("_", "-")} ${ago(o.ts)}`,
      o.trusted ? "" : " (untrusted)"))))));
  replace(document.querySelector("#breakers tbody"), rows);
  document.getElementById("breakers").hidden = !rows.length;
  document.getElementById("breakers-empty").hidden = Boolean(rows.length);
}

function number(v) {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4);
}

async function showBenchmarks() {
  await names();
  const found = await get("benchmarks");
  const blocks = found.map((b) => {
    const unit = b.unit ? ` ${b.unit}` : "";
    const values = Object.entries(b.values).map(([k, v]) => `${k} ${number(v)}${unit}`).join(" · ");
    const obs = (b.observations || []).map((o) => el("tr", {},
      el("td", { label: "Host" }, who(o.author)),
      el("td", { label: "Recorded", title: when(o.recorded_at) }, ago(o.recorded_at)),
      el("td", { label: "Weight" }, el("span", { class: "weight" },
        el("span", { class: `w${Math.round(o.weight * 10)}` })), o.weight.toFixed(2)),
      el("td", { label: "Values" }, Object.entries(o.summary).map(([k, v]) => `${k} ${number(v)}`).join(" · "))));
    return el("div", { class: "bench" },
      el("h2", {}, `${b.subject} · ${b.metric}`),
      el("p", { class: "values" }, values || "-"),
      el("p", { class: "note" }, `${b.count} observation(s) counted, newest ${ago(b.newest)}`,
        b.stale ? `, ${b.stale} stale` : ""),
      obs.length ? el("table", { class: "rows" },
        el("thead", {}, el("tr", {}, ["Host", "Recorded", "Weight", "Values"].map((h) => el("th", {}, h)))),
        el("tbody", {}, obs)) : "");
  });
  replace(document.getElementById("benchmarks"), blocks);
  document.getElementById("benchmarks-empty").hidden = Boolean(blocks.length);
}

const HOW = { self: "this host's own key", keyring: "in the keyring (trusted here by hand)" };

async function showKeys() {
  const keys = await names();
  replace(document.querySelector("#keys tbody"), keys.map((k) => el("tr", {},
    el("td", { label: "Name" }, k.self ? "this host" : k.name || "-"),
    el("td", { label: "Id", class: "id", title: k.id }, short(k.id)),
    el("td", { label: "Trusted" }, k.trusted ? badge("trusted", "ok") : badge("not trusted", "bad")),
    el("td", { label: "How" }, HOW[k.how] || k.how))));
}

const SHOW = { host: showHost, memories: showMemories, breakers: showBreakers,
  benchmarks: showBenchmarks, keys: showKeys };

// -- navigation and live updates ---------------------------------------------------------

async function refresh() {
  const page = state.page;
  state.dirty.delete(page);
  try {
    await SHOW[page]();
    if (!(document.getElementById("banner").dataset.sticky)) banner("");
    document.body.dataset.loaded = page; // for tests: this page has been drawn
  } catch (e) {
    if (e instanceof LoggedOut) {
      banner("This session has ended (the daemon restarted, or it expired): run `gossip web` for a new login link.");
      document.getElementById("banner").dataset.sticky = "1";
      if (state.events) state.events.close();
      live("logged out", "off");
    } else {
      banner(`Could not read ${page}: ${e.message}`);
    }
  }
}

// Read the page again soon (changes come in bursts: one read for many events).
function soon(delay = 300) {
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, delay);
}

function route() {
  const page = location.hash.slice(1);
  state.page = PAGES.includes(page) ? page : "host";
  for (const p of PAGES) document.getElementById(`page-${p}`).hidden = p !== state.page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${state.page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  refresh();
}

function live(text, tone) {
  const l = document.getElementById("live");
  l.textContent = text;
  l.className = `live ${tone}`;
}

// Which pages an event of the feed changes.
function touched(type, data) {
  if (type === "peer") return ["host"];
  if (type === "breaker") return ["breakers"];
  if (type === "trust") return PAGES;
  if (type === "record") {
    const kind = data.kind;
    if (kind === "memory" || kind === "retract") return ["memories", "host"];
    if (kind === "benchmark") return ["benchmarks", "host"];
    if (kind === "breaker") return ["breakers", "host"];
    return PAGES;
  }
  return PAGES; // lost, cutoff: read everything again
}

// Whether a record of the feed names a bank the bank filter does not offer yet.
function newBank(type, data) {
  const bank = type === "record" ? data.record?.fields?.bank : undefined;
  if (typeof bank !== "string") return false;
  return ![...document.getElementById("filters").elements.bank.options].some((o) => o.value === bank);
}

function follow() {
  const events = new EventSource("/ui/v1/events");
  state.events = events;
  events.onopen = () => live("live", "on");
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) {
      live("disconnected", "off");
      soon(0); // refused (the session ended?): reading the page again says why
    } else live("reconnecting…", "");
  };
  for (const type of ["record", "breaker", "peer", "trust", "lost", "cutoff"]) {
    events.addEventListener(type, (ev) => {
      let data = {};
      try { data = JSON.parse(ev.data); } catch { /* a comment line */ }
      if (type === "trust" || type === "lost" || newBank(type, data)) filtersReady = false; // authors, banks
      for (const p of touched(type, data)) state.dirty.add(p);
      if (state.dirty.has(state.page)) soon();
    });
  }
}

function start() {
  const form = document.getElementById("filters");
  form.addEventListener("submit", (e) => { e.preventDefault(); soon(0); });
  form.addEventListener("input", () => soon(250));
  document.getElementById("breakers-untrusted").addEventListener("change", () => soon(0));
  window.addEventListener("hashchange", route);
  // Ages and round trips change without events: the host page is read again now and then.
  setInterval(() => { if (state.page === "host" && !document.hidden) soon(0); }, 5000);
  route();
  follow();
}

start();
