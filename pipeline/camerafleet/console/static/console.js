// The CameraFleet console: a grid of camera tiles fed by the server's live stream (/api/events), and a
// camera's detail view (#camera/<id>). No framework and no build step: the DOM is built with textContent
// only (labels and ids come from manifests and models), and a tile's frame is fetched only while the tile
// is on screen, so a page of 150 cameras stays light.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const tiles = new Map(); // camera id -> {element, tile, shownSeq, visible}
const palette = ["#ff7b72", "#79c0ff", "#d2a8ff", "#ffa657", "#7ee787", "#f2cc60"];
const $ = (id) => document.getElementById(id);
let detailCamera = null;

function colour(model) {
  let h = 0;
  for (const ch of model) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value, unit = "") {
  return value === null || value === undefined ? "–" : `${value}${unit}`;
}

function frameUrl(camera, seq, size) {
  return `api/cameras/${encodeURIComponent(camera)}/frames/${seq}?size=${size}`;
}

// Boxes, labels and landmarks in frame pixels: the SVG's viewBox is the frame, stretched over the image.
// `labelLines`: how many label heights fit the frame's height (tiles are small, so their labels are larger).
function drawDetections(svg, frame, labelLines) {
  svg.replaceChildren();
  if (!frame || !frame.width || !frame.height) return;
  svg.setAttribute("viewBox", `0 0 ${frame.width} ${frame.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const fontSize = frame.height / labelLines;
  for (const d of frame.detections) {
    const [x1, y1, x2, y2] = d.box;
    const c = colour(d.model);
    const rect = document.createElementNS(SVG, "rect");
    for (const [k, v] of Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: c, class: "detection" })) rect.setAttribute(k, v);
    rect.dataset.model = d.model;
    rect.dataset.label = d.label;
    svg.append(rect);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x1);
    label.setAttribute("y", Math.max(fontSize, y1 - fontSize * 0.25));
    label.setAttribute("fill", c);
    label.setAttribute("font-size", fontSize);
    label.textContent = `${d.label} ${Math.round(d.score * 100)}%`;
    svg.append(label);
    for (const [x, y] of d.landmarks || []) {
      const dot = document.createElementNS(SVG, "circle");
      for (const [k, v] of Object.entries({ cx: x, cy: y, r: Math.max(2, frame.height / 250), fill: c, class: "landmark" })) dot.setAttribute(k, v);
      svg.append(dot);
    }
  }
}

// "face ×2, person": labels are the models' class names, so no attempt at plurals.
function countLabels(counts) {
  return Object.entries(counts).map(([label, n]) => (n > 1 ? `${label} ×${n}` : label)).join(", ");
}

function describe(frame) {
  if (!frame) return "no processed frame yet";
  const counts = {};
  for (const d of frame.detections) counts[d.label] = (counts[d.label] || 0) + 1;
  const found = countLabels(counts);
  return `frame ${frame.seq}: ${found || "nothing detected"}`;
}

function flagsOf(tile) {
  const flags = el("span", { class: "flags" });
  if (tile.up === true && tile.flags.length === 0) flags.append(el("span", { class: "flag up" }, "live"));
  for (const f of tile.flags) {
    const text = f === "down" && tile.problem ? `down: ${tile.problem}` : f;
    flags.append(el("span", { class: `flag ${f}`, "data-flag": f }, text));
  }
  return flags;
}

function countsOf(tile) {
  const dl = el("dl", { class: "counts" });
  const rows = [
    ["fps", tile.fps], ["p50", fmt(tile.latencyMsP50, " ms")], ["p99", fmt(tile.latencyMsP99, " ms")], ["produced", fmt(tile.produced)],
    ["processed", tile.processed], ["dropped", tile.dropped], ["failed", tile.failed],
  ];
  for (const [name, value] of rows) {
    const div = el("div", { "data-count": name });
    div.append(el("dt", {}, name), el("dd", {}, String(value)));
    dl.append(div);
  }
  return dl;
}

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const t = tiles.get(entry.target.dataset.camera);
    if (!t) continue;
    t.visible = entry.isIntersecting;
    if (t.visible) showFrame(t);
  }
}, { rootMargin: "200px" });

function createTile(camera) {
  const li = el("li", { class: "tile", "data-camera": camera });
  const link = el("a", { class: "open", href: `#camera/${encodeURIComponent(camera)}` });
  const title = el("h3");
  title.append(el("span", { class: "name" }, camera), el("span", { class: "flags" }));
  const figure = el("figure", { class: "frame" });
  const img = el("img", { alt: `Camera ${camera}: no processed frame yet`, decoding: "async" });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  figure.append(img, svg, el("div", { class: "placeholder" }, "waiting for a processed frame"), el("figcaption"));
  link.append(title, figure);
  li.append(link, el("dl", { class: "counts" }));
  const t = { element: li, tile: null, shownSeq: null, visible: false };
  tiles.set(camera, t);
  observer.observe(li);
  return t;
}

// The image and its boxes change together, once the new frame has loaded: boxes never sit on another frame.
function showFrame(t) {
  const frame = t.tile && t.tile.latest;
  if (!frame || frame.seq === t.shownSeq || !t.visible) return;
  const figure = t.element.querySelector("figure");
  const img = figure.querySelector("img");
  const loader = new Image();
  loader.onload = () => {
    img.src = loader.src;
    img.alt = `Camera ${t.tile.cameraId}, ${describe(frame)}`;
    drawDetections(figure.querySelector("svg"), frame, 12);
    figure.querySelector("figcaption").textContent = describe(frame);
    figure.querySelector(".placeholder").hidden = true;
    t.element.dataset.seq = frame.seq;
  };
  t.shownSeq = frame.seq;
  loader.src = frameUrl(t.tile.cameraId, frame.seq, "tile");
}

function updateTile(tile) {
  const t = tiles.get(tile.cameraId) || createTile(tile.cameraId);
  t.tile = tile;
  const li = t.element;
  li.classList.toggle("down", tile.flags.includes("down"));
  li.dataset.up = String(tile.up);
  li.querySelector("h3 .flags").replaceWith(flagsOf(tile));
  li.querySelector("dl.counts").replaceWith(countsOf(tile));
  showFrame(t);
}

function updateHeader(h) {
  $("fleet-name").textContent = h.fleet;
  document.title = `${h.fleet} · CameraFleet console`;
  $("f-cameras").textContent = h.camerasDown ? `${h.cameras} (${h.camerasDown} down)` : String(h.cameras);
  $("f-rate").textContent = h.processedPerS.toFixed(1);
  $("f-processed").textContent = h.processed;
  $("f-dropped").textContent = h.dropped;
  $("f-failed").textContent = h.failed;
  $("f-lag").textContent = fmt(h.lag);
  $("f-shed").textContent = fmt(h.shedSlots);
  // "2/3 producing (max 4), 1 consuming": actors now, desired when it differs, the autoscaler's bound.
  $("f-actors").textContent = h.pools.length ? h.pools.map((p) => {
    const now = p.desiredActors === p.actors ? String(p.actors) : `${p.actors}/${p.desiredActors}`;
    const max = p.maxActors === null ? "" : ` (max ${p.maxActors})`;
    return `${now} ${p.pool === "producer" ? "producing" : "consuming"}${max}`;
  }).join(", ") : "–";
  $("models").replaceChildren(
    ...h.models.map((m) => {
      const replicas = m.replicas === null ? `max ${m.maxReplicas} replicas` : `${m.replicas}/${m.maxReplicas} replicas`;
      const batch = m.meanBatchSize === null ? "no batches yet" : `batch ${m.meanBatchSize} in ${fmt(m.batchMsP50, " ms")}`;
      return el("li", { "data-model": m.name }, `${m.name}: ${replicas}, ${batch}`);
    }),
  );
}

function apply(snapshot) {
  updateHeader(snapshot.header);
  for (const tile of snapshot.tiles) updateTile(tile);
  // Grid order follows the manifest; cameras removed from it leave the grid.
  const grid = $("grid");
  const wanted = snapshot.cameraIds.map((id) => (tiles.get(id) || createTile(id)).element);
  for (const [id, t] of tiles) if (!snapshot.cameraIds.includes(id)) { observer.unobserve(t.element); tiles.delete(id); }
  if (grid.children.length !== wanted.length || wanted.some((node, i) => grid.children[i] !== node)) grid.replaceChildren(...wanted);
  if (detailCamera && snapshot.tiles.some((t) => t.cameraId === detailCamera)) loadDetail(detailCamera);
}

async function loadDetail(camera) {
  const resp = await fetch(`api/cameras/${encodeURIComponent(camera)}`);
  if (!resp.ok) {
    $("detail-title").textContent = `Camera ${camera}: ${(await resp.json()).error}`;
    return;
  }
  const d = await resp.json();
  if (detailCamera !== camera) return;
  const tile = d.tile;
  $("detail-title").textContent = `Camera ${camera}`;
  $("detail-title").append(" ", flagsOf(tile));
  const frame = tile.latest;
  const figure = $("detail-frame");
  const img = $("detail-image");
  if (frame && img.dataset.seq !== String(frame.seq)) {
    const loader = new Image();
    loader.onload = () => {
      img.src = loader.src;
      img.alt = `Camera ${camera}, ${describe(frame)}`;
      img.dataset.seq = frame.seq;
      drawDetections(figure.querySelector("svg"), frame, 30);
      $("detail-caption").textContent = describe(frame);
    };
    loader.src = frameUrl(camera, frame.seq, "full");
  }
  const ledger = [["processed", "", tile.processed]];
  for (const [reason, n] of Object.entries(d.droppedByReason)) ledger.push(["dropped", reason, n]);
  for (const [reason, n] of Object.entries(d.failedByReason)) ledger.push(["failed", reason, n]);
  $("detail-ledger").tBodies[0].replaceChildren(...ledger.map((row) => {
    const tr = el("tr");
    for (const cell of row) tr.append(el("td", {}, String(cell)));
    return tr;
  }));
  const source = [
    ["state", tile.up === null ? "not known here" : tile.up ? "up" : `down${tile.problem ? ": " + tile.problem : ""}`],
    ["reported down after", `${d.stallTimeoutS} s without frames`], ["reconnects", fmt(d.reconnects)],
    ["slots missed while down", fmt(d.downSlots)], ["slots shed", fmt(d.shedSlots)],
    ...Object.entries(d.sourceProblems).map(([p, n]) => [`down (${p})`, `${n}×`]),
  ];
  $("detail-source").replaceChildren(...source.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("detail-recent").tBodies[0].replaceChildren(...d.recent.map((r) => {
    const tr = el("tr");
    const found = countLabels(r.labels) || "–";
    for (const cell of [r.seq, new Date(r.captureTsMs).toLocaleTimeString(), fmt(r.latencyMs, " ms"), found, r.flags.join(", ") || "–"]) {
      tr.append(el("td", {}, String(cell)));
    }
    return tr;
  }));
}

function route() {
  const match = location.hash.match(/^#camera\/(.+)$/);
  detailCamera = match ? decodeURIComponent(match[1]) : null;
  $("grid-view").hidden = detailCamera !== null;
  $("detail-view").hidden = detailCamera === null;
  if (detailCamera !== null) {
    $("detail-image").removeAttribute("src");
    delete $("detail-image").dataset.seq;
    loadDetail(detailCamera);
    $("detail-title").focus({ preventScroll: true });
  }
}

function connect() {
  const source = new EventSource("api/events");
  source.onopen = () => { $("connection").textContent = "live"; $("connection").classList.add("live"); };
  source.onerror = () => { $("connection").textContent = "reconnecting…"; $("connection").classList.remove("live"); };
  source.onmessage = (event) => apply(JSON.parse(event.data));
}

$("detail-title").tabIndex = -1;
window.addEventListener("hashchange", route);
route();
connect();
