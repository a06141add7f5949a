// The lucidgrad web view: the rewrite browser (groups, kernels, passes, a graph drawing per step), the profiler
// timeline and the memory view. It reads one object from /data.json (the viz format, version 1: VIZFORMAT / docs/viz.md)
// and needs nothing else: no library, no network. State the tests read is kept in data-* attributes on the elements.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const SVGNS = "http://www.w3.org/2000/svg";

// h("div", {class: "x", dataset: {uid: 3}, onclick: f}, "text", child) -> an element
function h(tag, attrs, ...kids) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.entries(v).forEach(([dk, dv]) => { el.dataset[dk] = dv; });
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) if (kid !== undefined && kid !== null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

// replace an element's children by `kids` (nested arrays flattened, null/false left out)
function fill(el, ...kids) { el.replaceChildren(...kids.flat(Infinity).filter(k => k !== undefined && k !== null && k !== false)); }

function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (n < 0 ? "-" : "") + (i ? v.toFixed(v < 10 ? 2 : 1) : v) + " " + units[i];
}
function fmtCount(n) {
  if (n === undefined || n === null) return "";
  const big = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]].find(([d]) => Math.abs(n) >= d);
  return n.toLocaleString("en-US") + (big ? ` (${(n / big[0]).toFixed(2)} ${big[1]})` : "");
}
// a duration or time in microseconds (the trace's unit), shown in the unit that suits it
function fmtTime(us) {
  const a = Math.abs(us);
  if (a >= 1e6) return (us / 1e6).toFixed(3) + " s";
  if (a >= 1e3) return (us / 1e3).toFixed(3) + " ms";
  if (a >= 1) return us.toFixed(a >= 100 ? 1 : 3) + " µs";
  return (us * 1e3).toFixed(0) + " ns";
}
const shorten = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

let D = null;            // the data
const G = new Map();     // group id -> group
const KIDS = new Map();  // group id (or "root") -> child groups, in order
const PASS = new Map();  // pass group id -> its pass record

// ---------------------------------------------------------------- graphs
const reachMemo = new Map();
// the uids (numbers) of the graph under `sink`: everything reachable through src
function reach(sink) {
  if (sink === null || sink === undefined) return new Set();
  let got = reachMemo.get(sink);
  if (got) return got;
  got = new Set();
  const stack = [sink];
  while (stack.length) {
    const u = stack.pop();
    if (got.has(u)) continue;
    got.add(u);
    const n = D.nodes[u];
    if (n) for (const s of n.src) if (!got.has(s)) stack.push(s);
  }
  if (reachMemo.size > 400) reachMemo.clear();   // graphs share most nodes, but a long session must not keep them all
  reachMemo.set(sink, got);
  return got;
}

const OP_CLASS = [
  [/^(CONST|VCONST|BUFFER|DEFINE_GLOBAL|DEFINE_LOCAL|DEFINE_REG|DEFINE_VAR|DEVICE|UNIQUE|BIND|VIEW)/, "c-mem"],
  [/^(LOAD|STORE|INDEX|COPY|ASSIGN|CONTIGUOUS|BUFFERIZE|AFTER|KERNEL|CALL|SINK)/, "c-mem"],
  [/^(REDUCE|REDUCE_AXIS|RANGE|END|ENDRANGE|SPECIAL|WMMA|BARRIER)/, "c-red"],
  [/^(RESHAPE|PERMUTE|EXPAND|PAD|SHRINK|FLIP|VECTORIZE|GEP|CAT|PTRCAT|UNROLL|CONTRACT)/, "c-mov"],
  [/^(IF|ENDIF|WHERE|CMPLT|CMPNE|CMPEQ)/, "c-ctl"],
];
const opClass = op => (OP_CLASS.find(([re]) => re.test(op)) || [null, "c-alu"])[1];

// a layered drawing of the nodes `uids` (a Set): sources above their users, longest-path layers with leaves pulled
// down next to their first user, dummy points on edges that skip layers, and a few barycentre sweeps to order layers
function layout(uids) {
  const ids = Array.from(uids);
  const srcs = new Map(ids.map(u => [u, (D.nodes[u] ? D.nodes[u].src : []).filter(s => uids.has(s))]));
  const users = new Map(ids.map(u => [u, []]));
  for (const u of ids) for (const s of new Set(srcs.get(u))) users.get(s).push(u);
  // longest path from the leaves, in a post-order that needs no recursion
  const layer = new Map(), order = [];
  for (const root of ids) {
    if (layer.has(root)) continue;
    const stack = [[root, 0]];
    layer.set(root, -1);
    while (stack.length) {
      const top = stack[stack.length - 1], ss = srcs.get(top[0]);
      if (top[1] < ss.length) {
        const s = ss[top[1]++];
        if (!layer.has(s)) { layer.set(s, -1); stack.push([s, 0]); }
      } else {
        stack.pop();
        layer.set(top[0], ss.reduce((m, s) => Math.max(m, layer.get(s) + 1), 0));
        order.push(top[0]);
      }
    }
  }
  for (const u of order) if (!srcs.get(u).length && users.get(u).length) layer.set(u, Math.min(...users.get(u).map(c => layer.get(c))) - 1);
  const nl = Math.max(0, ...layer.values()) + 1;
  const layers = Array.from({length: nl}, () => []);
  const V = new Map();  // vertex key -> {key, uid|null, layer, w, up: [keys], down: [keys]}
  const vert = (key, uid, l, w) => { const v = {key, uid, layer: l, w, up: [], down: []}; V.set(key, v); layers[l].push(v); return v; };
  for (const u of order) {
    const n = D.nodes[u] || {op: "?", arg: "", dtype: ""};
    const lab = nodeLabel(u, n);
    vert("n" + u, u, layer.get(u), Math.max(lab[0].length, lab[1].length) * 6.7 + 14);
  }
  const edges = [];  // [src uid, user uid, [vertex keys from the source down to the user]]
  let dummies = 0;
  const total = ids.reduce((a, u) => a + srcs.get(u).reduce((b, s) => b + layer.get(u) - layer.get(s) - 1, 0), 0);
  const useDummies = total <= Math.min(1500, 3 * ids.length);   // else long edges cross nodes: a readable price for speed
  for (const u of ids) {
    for (const s of new Set(srcs.get(u))) {
      const path = ["n" + s];
      if (useDummies) for (let l = layer.get(s) + 1; l < layer.get(u); l++) { const d = vert("d" + (dummies++), null, l, 6); path.push(d.key); }
      path.push("n" + u);
      for (let i = 0; i + 1 < path.length; i++) { V.get(path[i]).down.push(path[i + 1]); V.get(path[i + 1]).up.push(path[i]); }
      edges.push([s, u, path]);
    }
  }
  // order: the post-order as a start (it keeps a node near its sources), then barycentre sweeps down and up
  layers.forEach(ly => ly.forEach((v, i) => { v.pos = i; }));
  const sweep = (ly, nb) => {
    for (const v of ly) { const ps = v[nb].map(k => V.get(k).pos); v.bc = ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : v.pos; }
    ly.sort((a, b) => a.bc - b.bc || a.pos - b.pos).forEach((v, i) => { v.pos = i; });
  };
  for (let it = 0; it < 4; it++) {
    for (let l = 1; l < nl; l++) sweep(layers[l], "up");
    for (let l = nl - 2; l >= 0; l--) sweep(layers[l], "down");
  }
  // x: pack each layer, then pull nodes toward their neighbours' centre without reordering or overlapping
  const GAP = 14;
  const pack = (ly, want) => {
    let x = -Infinity;
    for (const v of ly) { v.x = Math.max(want(v), x + v.w / 2 + GAP); x = v.x + v.w / 2; }
    let nx = Infinity;   // and back from the right, so a crowded layer is spread around what it wants, not pushed right
    for (let i = ly.length - 1; i >= 0; i--) { const v = ly[i]; const r = Math.min(v.x, want(v), nx - v.w / 2 - GAP); v.x = (v.x + r) / 2; nx = v.x - v.w / 2; }
    let px = -Infinity;
    for (const v of ly) { v.x = Math.max(v.x, px + v.w / 2 + GAP); px = v.x + v.w / 2; }
  };
  layers.forEach(ly => { let x = 0; ly.forEach(v => { v.x = x + v.w / 2; x += v.w + GAP; }); });
  const centre = nb => v => { const n = v[nb].map(k => V.get(k).x); return n.length ? n.reduce((a, b) => a + b, 0) / n.length : v.x; };
  for (let it = 0; it < 3; it++) {
    for (let l = 1; l < nl; l++) pack(layers[l], centre("up"));
    for (let l = nl - 2; l >= 0; l--) pack(layers[l], centre("down"));
  }
  const LH = 64;
  let minx = Infinity, maxx = -Infinity;
  for (const v of V.values()) { v.y = v.layer * LH; minx = Math.min(minx, v.x - v.w / 2); maxx = Math.max(maxx, v.x + v.w / 2); }
  for (const v of V.values()) v.x -= minx;
  return {V, edges, width: maxx - minx, height: nl * LH, layers: nl};
}

function nodeLabel(uid, n) {
  const arg = n.arg === undefined || n.arg === null || n.arg === "None" || n.arg === "" ? "" : String(n.arg);
  return [n.op, shorten([n.dtype && n.dtype !== "void" ? n.dtype : "", arg].filter(Boolean).join(" "), 32)];
}

// at most this many nodes are drawn; a bigger graph is drawn around its change (or its sink), with a note
const MAX_DRAWN = 500;
function neighbourhood(all, changed, sink) {
  if (all.size <= MAX_DRAWN) return all;
  const users = new Map();
  for (const u of all) for (const s of (D.nodes[u] ? D.nodes[u].src : [])) { if (!users.has(s)) users.set(s, []); users.get(s).push(u); }
  const keep = new Set();
  let frontier = changed.size ? Array.from(changed).slice(0, MAX_DRAWN) : [sink];
  frontier.forEach(u => keep.add(u));
  while (frontier.length && keep.size < MAX_DRAWN) {   // breadth first both ways: sources and users of what is kept
    const next = [];
    for (const u of frontier) {
      for (const v of [...(D.nodes[u] ? D.nodes[u].src : []), ...(users.get(u) || [])]) {
        if (all.has(v) && !keep.has(v) && keep.size < MAX_DRAWN) { keep.add(v); next.push(v); }
      }
    }
    frontier = next;
  }
  return keep;
}

// the SVG drawing of graph `sink`, nodes in `changed` highlighted; `focus` (a uid) gets an extra mark
function drawGraph(wrap, sink, changed, focus) {
  const all = reach(sink);
  const shown = neighbourhood(all, changed, sink);
  const L = layout(shown);
  fill(wrap);
  wrap.dataset.nodes = all.size;
  wrap.dataset.shown = shown.size;
  wrap.dataset.changed = Array.from(changed).sort((a, b) => a - b).join(",");
  const svg = h("svg:svg", {});
  const world = h("svg:g", {class: "world"});   // edges run down, from a source to its user: no arrowheads needed
  svg.append(world);
  const NH = 30;
  for (const [s, u, path] of L.edges) {
    const pts = path.map(k => V_xy(L.V.get(k), NH));
    let d = `M${pts[0][0]},${pts[0][1] + NH / 2}`;
    for (let i = 1; i < pts.length; i++) {
      const [x0, y0] = i === 1 ? [pts[0][0], pts[0][1] + NH / 2] : pts[i - 1], [x1, y1] = i === pts.length - 1 ? [pts[i][0], pts[i][1] - NH / 2] : pts[i];
      const my = (y0 + y1) / 2;
      d += ` C${x0},${my} ${x1},${my} ${x1},${y1}`;
    }
    world.append(h("svg:path", {class: "edge" + (changed.has(u) ? " hot" : ""), d, dataset: {from: s, to: u}}));
  }
  for (const v of L.V.values()) {
    if (v.uid === null) continue;
    const n = D.nodes[v.uid] || {op: "?", src: [], dtype: "", arg: ""};
    const [l1, l2] = nodeLabel(v.uid, n);
    const cut = n.src.some(s => !shown.has(s));
    const cls = ["node", opClass(n.op), changed.has(v.uid) && "changed", v.uid === focus && "result", cut && "cut"].filter(Boolean).join(" ");
    const g = h("svg:g", {class: cls, transform: `translate(${v.x - v.w / 2},${v.y - NH / 2})`, dataset: {uid: v.uid, op: n.op}},
      h("svg:title", {}, `%${v.uid} ${n.op} ${n.dtype || ""} ${n.arg || ""}` + (cut ? "\n(some sources not drawn)" : "")),
      h("svg:rect", {width: v.w, height: NH, rx: 4}),
      h("svg:text", {x: 7, y: 12}, l1),
      h("svg:text", {x: 7, y: 25, class: "sub"}, l2));
    g.addEventListener("click", ev => { ev.stopPropagation(); showNode(v.uid); $$(".node.picked", svg).forEach(e => e.classList.remove("picked")); g.classList.add("picked"); });
    world.append(g);
  }
  wrap.append(svg);
  if (shown.size < all.size) wrap.append(h("div", {class: "graph-note"}, `showing ${shown.size} of ${all.size} nodes, around ${changed.size ? "the change" : "the sink"}`));
  panZoom(svg, world, L, changed, NH);
}
function V_xy(v, NH) { return [v.x, v.y + NH / 2]; }

// wheel zooms at the pointer, dragging pans; the view starts fitted, or (a big graph) around the first changed node
function panZoom(svg, world, L, changed, NH) {
  const box = svg.getBoundingClientRect();
  const W = box.width || 800, H = box.height || 400, pad = 20;
  let k = Math.min(1.2, (W - 2 * pad) / Math.max(L.width, 1), (H - 2 * pad) / Math.max(L.height + NH, 1));
  let tx = pad, ty = pad;
  if (k < 0.45) {
    k = 0.7;
    const first = Array.from(L.V.values()).find(v => v.uid !== null && changed.has(v.uid)) || Array.from(L.V.values()).reduce((a, b) => (b.y > a.y ? b : a));
    tx = W / 2 - first.x * k; ty = H / 2 - (first.y + NH / 2) * k;
  } else { tx = (W - L.width * k) / 2; ty = pad; }
  const apply = () => world.setAttribute("transform", `translate(${tx},${ty}) scale(${k})`);
  apply();
  svg.addEventListener("wheel", ev => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
    const f = Math.exp(-ev.deltaY * 0.0015);
    const nk = Math.min(4, Math.max(0.05, k * f));
    tx = mx - (mx - tx) * nk / k; ty = my - (my - ty) * nk / k; k = nk;
    apply();
  }, {passive: false});
  let drag = null;
  svg.addEventListener("mousedown", ev => { drag = [ev.clientX - tx, ev.clientY - ty]; svg.style.cursor = "grabbing"; });
  window.addEventListener("mousemove", ev => { if (drag) { tx = ev.clientX - drag[0]; ty = ev.clientY - drag[1]; apply(); } });
  window.addEventListener("mouseup", () => { drag = null; svg.style.cursor = ""; });
}

function showNode(uid) {
  const n = D.nodes[uid];
  const box = $("#node-info");
  if (!box) return;
  if (!n) { fill(box, `%${uid}: not stored (the recording's node cap)`); return; }
  fill(box, h("dl", {class: "kv", dataset: {uid}},
    h("dt", {}, "node"), h("dd", {}, `%${uid}`),
    h("dt", {}, "op"), h("dd", {}, n.op),
    h("dt", {}, "dtype"), h("dd", {}, n.dtype || ""),
    h("dt", {}, "arg"), h("dd", {}, h("pre", {}, String(n.arg ?? ""))),
    h("dt", {}, "src"), h("dd", {}, n.src.length ? n.src.map(s => `%${s}${D.nodes[s] ? " " + D.nodes[s].op : ""}`).join(", ") : "—")));
}

// ---------------------------------------------------------------- the group tree and the detail pane
const sel = {gid: null, pos: 0};   // the selected group; for a pass, the position in its steps

function groupOps(gid) {   // the ops in the graphs of a group's passes (for the search), cached on the group
  const g = G.get(gid);
  if (g._ops) return g._ops;
  const ops = new Set();
  const p = PASS.get(gid);
  if (p) {
    const sinks = [p.before, p.after, ...p.steps.map(s => s.result)];
    for (const s of sinks) for (const u of reach(s)) if (D.nodes[u]) ops.add(D.nodes[u].op.toLowerCase());
  }
  for (const k of KIDS.get(gid) || []) groupOps(k.id).forEach(o => ops.add(o));
  g._ops = ops;
  return ops;
}

function buildTree() {
  const tree = $("#tree");
  fill(tree);
  const add = (parent, g, depth) => {
    const kids = KIDS.get(g.id) || [];
    const p = PASS.get(g.id);
    const info = g.info || {};
    const item = h("div", {class: `item kind-${g.kind}`, style: `--depth:${depth}`, title: info.reason ? `${g.name}: ${info.reason}` : g.name, dataset: {gid: g.id, kind: g.kind, name: g.name}},
      h("span", {class: "twisty"}, kids.length ? "▸" : ""),
      h("span", {class: "kind"}, g.kind === "kernel" && info.kind && info.kind !== "kernel" ? info.kind : g.kind),
      h("span", {class: "name"}, g.name),
      g.kind === "kernel" && info.reason ? h("span", {class: "reason", dataset: {field: "reason"}}, info.reason) : null,
      p ? h("span", {class: "reason"}, `${p.steps.length + (p.steps_dropped || 0)} step${p.steps.length + (p.steps_dropped || 0) === 1 ? "" : "s"}`) : null);
    if (p && !p.steps.length) item.classList.add("empty");
    const box = h("div", {class: "kids", dataset: {gid: g.id}});
    box.hidden = !(g.kind === "program" || g.kind === "realize");
    if (kids.length && !box.hidden) item.firstChild.textContent = "▾";
    item.addEventListener("click", () => { select(g.id); if (kids.length) toggle(g.id, g.kind === "kernel" || g.kind === "schedule" ? true : undefined); });
    parent.append(item, box);
    kids.forEach(k => add(box, k, depth + 1));
  };
  (KIDS.get("root") || []).forEach(g => add(tree, g, 0));
  countKernels();
}

function toggle(gid, open) {
  const box = $(`.kids[data-gid="${gid}"]`), item = $(`.item[data-gid="${gid}"]`);
  if (!box) return;
  box.hidden = open === undefined ? !box.hidden : !open;
  item.firstChild.textContent = box.hidden ? "▸" : "▾";
}

function countKernels() {
  const all = $$(".item.kind-kernel"), listed = all.filter(e => e.style.display !== "none");
  $("#count").textContent = `${listed.length} of ${all.length} kernels, ${D.passes.length} passes`;
  $("#tree").dataset.kernels = listed.length;
}

// the search: a group is listed when its name or an op of its graphs contains the text, when a group inside it is, or
// when a group around it is (a kernel found by name keeps its passes)
function filterTree(q) {
  q = q.trim().toLowerCase();
  const match = new Map(), shown = new Map();
  const selfMatch = g => g.name.toLowerCase().includes(q) || (g.kind !== "program" && g.kind !== "realize" && Array.from(groupOps(g.id)).some(o => o.includes(q)));
  const visit = (g, ancestorMatched) => {
    const m = !q || selfMatch(g);
    match.set(g.id, m);
    let any = m || ancestorMatched;
    for (const k of KIDS.get(g.id) || []) any = visit(k, ancestorMatched || (m && q !== "")) || any;
    shown.set(g.id, any);
    return any;
  };
  (KIDS.get("root") || []).forEach(g => visit(g, false));
  for (const item of $$(".item")) {
    const gid = Number(item.dataset.gid);
    item.style.display = shown.get(gid) ? "" : "none";
    item.classList.toggle("hit", !!q && match.get(gid));
    const box = $(`.kids[data-gid="${gid}"]`);
    if (q && box && box.childElementCount && shown.get(gid)) { box.hidden = false; item.firstChild.textContent = "▾"; }
  }
  countKernels();
}

function select(gid, pos) {
  $$(".item.selected").forEach(e => e.classList.remove("selected"));
  const item = $(`.item[data-gid="${gid}"]`);
  if (item) {
    item.classList.add("selected");
    for (let box = item.parentElement; box && box.classList.contains("kids"); box = box.parentElement) toggle(Number(box.dataset.gid), true);
    item.scrollIntoView({block: "nearest"});
  }
  sel.gid = gid;
  const g = G.get(gid);
  const det = $("#detail");
  det.dataset.gid = gid;
  det.dataset.kind = g.kind;
  if (PASS.has(gid)) { sel.pos = pos ?? (passPositions(PASS.get(gid)).length > 1 ? 1 : 0); showPass(); }
  else if (g.kind === "kernel") showKernel(g);
  else showGroup(g);
}

const crumbs = g => { const out = []; for (let p = G.get(g.parent); p; p = G.get(p.parent)) out.unshift(p.name); return out.join(" › "); };
const groupLink = k => h("a", {class: "link", dataset: {gid: k.id}, onclick: () => select(k.id)}, k.name);

function showKernel(g) {
  const info = g.info || {};
  const dims = v => (Array.isArray(v) ? `[${v.join(", ")}]` : v === null || v === undefined ? "—" : String(v));
  const row = (label, field, value) => (value === undefined ? [] : [h("dt", {}, label), h("dd", {dataset: {field}}, value)]);
  const kids = KIDS.get(g.id) || [];
  fill($("#detail"),
    h("div", {class: "hint"}, crumbs(g)),
    h("h2", {}, g.name),
    h("dl", {class: "kv"},
      row("reason", "reason", info.reason ?? "(none recorded)"),
      row("kind", "kind", info.kind),
      row("device", "device", info.device),
      row("global", "global", "global" in info ? dims(info.global) : undefined),
      row("local", "local", "local" in info ? dims(info.local) : undefined),
      row("FLOPs", "flops", "flops" in info ? fmtCount(info.flops) : undefined),
      row("bytes", "bytes", "bytes" in info ? `${info.bytes.toLocaleString("en-US")} (${fmtBytes(info.bytes)})` : undefined),
      row("intensity", "intensity", info.flops !== undefined && info.bytes ? `${(info.flops / info.bytes).toFixed(2)} FLOP/byte` : undefined),
      Object.entries(info).filter(([k]) => !["reason", "kind", "device", "global", "local", "flops", "bytes", "source", "opts"].includes(k))
        .map(([k, v]) => row(k, k, typeof v === "string" ? v : JSON.stringify(v)))),
    h("h3", {}, `opts (${(info.opts || []).length})`),
    (info.opts || []).length ? h("ul", {class: "opts", dataset: {field: "opts"}}, info.opts.map(o => h("li", {}, o))) : h("div", {class: "hint", dataset: {field: "opts"}}, "none applied"),
    "source" in info ? [h("h3", {}, "source"), h("pre", {class: "source", dataset: {field: "source"}}, info.source)] : null,
    kids.length ? [h("h3", {}, `passes (${kids.length})`), h("ul", {class: "opts"}, kids.map(k => h("li", {}, groupLink(k), PASS.has(k.id) ? ` — ${plural(PASS.get(k.id).steps.length, "step")}` : "")))] : null);
  // a rendered source starts with its prelude: show the kernel's own function first
  const pre = $("#detail pre.source"), at = info.source ? info.source.indexOf(g.name + "(") : -1;
  if (pre && at > 0) pre.scrollTop = info.source.slice(0, at).split("\n").length * parseFloat(getComputedStyle(pre).lineHeight) - 20;
}
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function showGroup(g) {
  const kids = KIDS.get(g.id) || [];
  const info = g.info || {};
  fill($("#detail"),
    h("div", {class: "hint"}, crumbs(g)),
    h("h2", {}, g.name),
    Object.keys(info).length ? h("dl", {class: "kv"}, Object.entries(info).map(([k, v]) => [h("dt", {}, k), h("dd", {dataset: {field: k}}, Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : String(v))])) : null,
    kids.length ? [h("h3", {}, `${kids.length} inside`), h("ul", {class: "opts"}, kids.map(k => h("li", {}, `${k.kind} `, groupLink(k),
      k.kind === "kernel" && k.info && k.info.reason ? h("span", {class: "hint"}, ` — ${k.info.reason}`) : null)))] : null);
}

// the positions a pass can show: its input, the graph after each stored step, and its output where the steps do not
// reach it (a pass that is not a rewrite, or steps dropped by the recording's cap)
function passPositions(p) {
  if (p._pos) return p._pos;
  const pos = [{label: "input graph", graph: p.before, prev: null, step: null}];
  p.steps.forEach((s, i) => pos.push({label: `step ${i + 1} of ${p.steps.length}`, graph: s.graph, prev: i ? p.steps[i - 1].graph : p.before, step: s}));
  const last = pos[pos.length - 1].graph;
  if (p.after !== undefined && p.after !== null && p.after !== last) {
    pos.push({label: p.steps_dropped ? `output (${p.steps_dropped} steps not stored)` : "output graph", graph: p.after, prev: last, step: null});
  }
  p._pos = pos;
  return pos;
}

function changedNodes(position) {
  if (position.prev === null) return new Set();
  const before = reach(position.prev);
  return new Set(Array.from(reach(position.graph)).filter(u => !before.has(u)));
}

function showPass() {
  const g = G.get(sel.gid), p = PASS.get(sel.gid), all = passPositions(p);
  sel.pos = Math.max(0, Math.min(sel.pos, all.length - 1));
  const position = all[sel.pos], s = position.step;
  const changed = changedNodes(position);
  const btn = (id, label, to, title) => h("button", {id, title, disabled: to < 0 || to >= all.length || to === sel.pos, onclick: () => { sel.pos = to; showPass(); }}, label);
  const wrap = h("div", {class: "graph-wrap", id: "graph"});
  const det = $("#detail");
  det.dataset.pos = sel.pos;
  fill(det,
    h("div", {class: "hint"}, crumbs(g)),
    h("h2", {}, `${p.name}${p.top_down ? " (top-down)" : ""}`),
    h("div", {class: "stepper"},
      btn("first", "«", 0, "the input graph (Home)"), btn("prev", "◀", sel.pos - 1, "previous step (←)"),
      h("span", {id: "step-label", dataset: {pos: sel.pos, count: all.length}}, position.label),
      btn("next", "▶", sel.pos + 1, "next step (→)"), btn("last", "»", all.length - 1, "the last step (End)"),
      h("span", {class: "hint"}, `${p.steps.length} step${p.steps.length === 1 ? "" : "s"} stored${p.steps_dropped ? `, ${p.steps_dropped} dropped` : ""} · ${changed.size} node${changed.size === 1 ? "" : "s"} new`)),
    ruleBox(p, sel.pos),
    wrap,
    h("div", {id: "node-info", class: "info"}, h("span", {class: "hint"}, "Click a node for its arg and sources. Yellow: new in this step.")));
  drawGraph(wrap, position.graph, changed, s ? s.result : null);
}
// what the rule panel says at position `pos` of pass `p`: the step's rule (pattern, function, file:line) and the nodes
// it matched and returned, or what the graph shown is where no step is
function ruleBox(p, pos) {
  const position = passPositions(p)[pos], s = position.step;
  return h("div", {id: "rule", dataset: {step: s ? pos - 1 : ""}},
    s ? [
      h("div", {}, h("b", {}, "rule "), h("span", {dataset: {field: "fn"}}, s.fn || "(anonymous)"), " at ", h("span", {class: "loc", dataset: {field: "loc"}}, s.loc || "(unknown)")),
      h("pre", {dataset: {field: "rule"}}, s.rule || ""),
      h("div", {}, "matched ", nodeRef(s.node), " → returned ", nodeRef(s.result))]
      : h("div", {class: "hint"}, pos === 0 ? `the graph this pass was given (${reach(position.graph).size} nodes)` :
        p.steps.length ? "the pass's output: steps past the cap were not stored" : "this pass changed the graph without rule steps: its input and output"));
}
const nodeRef = u => h("a", {class: "link", dataset: {uid: u}, onclick: () => showNode(u)}, `%${u} ${D.nodes[u] ? D.nodes[u].op : "(not stored)"}`);

// the passes in the order the list shows them (only those the search leaves), for ↑ and ↓
const listedPasses = () => $$(".item.kind-pass").filter(e => e.style.display !== "none").map(e => Number(e.dataset.gid));

function onKey(ev) {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (currentTab === "timeline") return timelineKey(ev);
  if (currentTab !== "rewrites" || sel.gid === null) return;
  if (PASS.has(sel.gid)) {
    const n = passPositions(PASS.get(sel.gid)).length;
    const to = {ArrowRight: sel.pos + 1, ArrowLeft: sel.pos - 1, Home: 0, End: n - 1}[ev.key];
    if (to !== undefined) { ev.preventDefault(); if (to >= 0 && to < n && to !== sel.pos) { sel.pos = to; showPass(); } return; }
  }
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    const list = listedPasses(), i = list.indexOf(sel.gid);
    const j = i < 0 ? 0 : i + (ev.key === "ArrowDown" ? 1 : -1);
    if (list.length && j >= 0 && j < list.length) { ev.preventDefault(); select(list[j]); }
  }
}

// ---------------------------------------------------------------- the timeline
const CAT_COLOR = {kernel: "#3b82f6", copy: "#f59e0b", compile: "#ef4444", codegen: "#a855f7", schedule: "#10b981", lower: "#14b8a6",
                   jit: "#64748b", marker: "#eab308", graph: "#1e3a8a", host: "#94a3b8"};
const colorOf = key => CAT_COLOR[key] || `hsl(${Array.from(String(key)).reduce((a, c) => (a * 31 + c.charCodeAt(0)) % 360, 7)},55%,60%)`;
const TL = {tracks: [], t0: 0, t1: 1, start: 0, end: 1, selected: null};
const ROW = 18;

// the trace as tracks: per process, per thread, slices with a depth each (B/E pairs made slices); counters per name
// and key; alloc/free instants as each device's buffers (the memory view)
function parseTrace(trace) {
  const evs = trace.traceEvents || [];
  const procName = new Map(), threadName = new Map(), procSort = new Map();
  const slices = new Map(), counters = new Map(), instants = new Map(), open = new Map(), buffers = new Map();
  let start = Infinity, end = -Infinity;
  const span = (ts, dur) => { start = Math.min(start, ts); end = Math.max(end, ts + (dur || 0)); };
  for (const e of evs) {
    if (e.ph === "M") {
      if (e.name === "process_name") procName.set(e.pid, e.args && e.args.name);
      else if (e.name === "thread_name") threadName.set(`${e.pid}:${e.tid}`, e.args && e.args.name);
      else if (e.name === "process_sort_index") procSort.set(e.pid, e.args && e.args.sort_index);
      continue;
    }
    if (typeof e.ts !== "number") continue;
    const key = `${e.pid}:${e.tid}`;
    if (e.ph === "X") { span(e.ts, e.dur); (slices.get(key) || slices.set(key, []).get(key)).push({name: e.name, cat: e.cat || "", ts: e.ts, dur: e.dur || 0, args: e.args}); }
    else if (e.ph === "B") (open.get(key) || open.set(key, []).get(key)).push(e);
    else if (e.ph === "E") {
      const b = (open.get(key) || []).pop();
      if (b) { span(b.ts, e.ts - b.ts); (slices.get(key) || slices.set(key, []).get(key)).push({name: b.name, cat: b.cat || "", ts: b.ts, dur: e.ts - b.ts, args: {...b.args, ...e.args}}); }
    } else if (e.ph === "C") {
      span(e.ts, 0);
      for (const [k, v] of Object.entries(e.args || {})) {
        const ck = `${e.pid}\u0000${e.name}\u0000${k}`;
        (counters.get(ck) || counters.set(ck, {pid: e.pid, name: e.name, key: k, points: []}).get(ck)).points.push([e.ts, v]);
      }
    } else if (e.ph === "i" || e.ph === "I") {
      span(e.ts, 0);
      if (e.cat === "memory" && e.args && e.args.buffer !== undefined) (buffers.get(e.pid) || buffers.set(e.pid, []).get(e.pid)).push(e);
      else (instants.get(key) || instants.set(key, []).get(key)).push(e);
    }
  }
  if (!(end > start)) { start = start === Infinity ? 0 : start; end = start + 1; }
  const pids = new Set([...Array.from(slices.keys()).map(k => Number(k.split(":")[0])), ...Array.from(counters.values()).map(c => c.pid), ...buffers.keys()]);
  const procs = Array.from(pids).sort((a, b) => (procSort.get(a) ?? a) - (procSort.get(b) ?? b));
  const tracks = [];
  for (const pid of procs) {
    const tkeys = Array.from(new Set([...slices.keys(), ...instants.keys()])).filter(k => Number(k.split(":")[0]) === pid).sort((a, b) => Number(a.split(":")[1]) - Number(b.split(":")[1]));
    for (const key of tkeys) {
      const ss = (slices.get(key) || []).sort((a, b) => a.ts - b.ts || b.dur - a.dur);
      const stack = [];   // depth: how many enclosing slices are still open
      for (const s of ss) {
        while (stack.length && s.ts >= stack[stack.length - 1].ts + stack[stack.length - 1].dur) stack.pop();
        s.depth = stack.length;
        stack.push(s);
      }
      const depth = ss.reduce((m, s) => Math.max(m, s.depth + 1), 1);
      tracks.push({kind: "slices", pid, tid: Number(key.split(":")[1]), proc: procName.get(pid) || `process ${pid}`,
                   name: threadName.get(key) || `thread ${key.split(":")[1]}`, slices: ss, instants: instants.get(key) || [], depth});
    }
    for (const c of counters.values()) {
      if (c.pid !== pid) continue;
      c.points.sort((a, b) => a[0] - b[0]);
      tracks.push({kind: "counter", pid, proc: procName.get(pid) || `process ${pid}`, name: c.key === "value" || c.key === c.name ? c.name : `${c.name} (${c.key})`,
                   counter: c.name, points: c.points, max: c.points.reduce((m, p) => Math.max(m, p[1]), 0), bytes: c.key === "bytes"});
    }
  }
  return {tracks, start, end, procName, buffers};
}

function buildTimeline() {
  const P = parseTrace(D.profile);
  TL.P = P;
  TL.start = TL.t0 = P.start; TL.end = TL.t1 = P.end;
  TL.tracks = P.tracks;
  const box = $("#tracks");
  fill(box);
  box.dataset.tracks = P.tracks.length;
  const ruler = h("div", {class: "track ruler"}, h("div", {class: "tlabel"}, "time"), h("canvas", {height: 20}));
  box.append(ruler);
  TL.ruler = ruler.lastChild;
  let proc = null;
  for (const t of P.tracks) {
    if (t.proc !== proc) { proc = t.proc; box.append(h("div", {class: "proc-name", dataset: {pid: t.pid}}, proc)); }
    const cats = {};
    if (t.kind === "slices") t.slices.forEach(s => { cats[s.cat] = (cats[s.cat] || 0) + 1; });
    const el = h("div", {class: "track", dataset: {kind: t.kind, pid: t.pid, tid: t.tid ?? "", name: t.name, proc: t.proc,
                                                  slices: t.kind === "slices" ? t.slices.length : undefined, cats: JSON.stringify(cats),
                                                  points: t.kind === "counter" ? t.points.length : undefined, max: t.kind === "counter" ? t.max : undefined}},
      h("div", {class: "tlabel", title: t.name}, t.name), h("canvas", {}));
    t.el = el; t.canvas = el.lastChild;
    t.height = t.kind === "counter" ? 44 : t.depth * ROW + 4;
    box.append(el);
    attachTrackMouse(t);
  }
  $("#tl-fit").onclick = () => zoomTo(TL.start, TL.end);
  $("#tl-in").onclick = () => zoomBy(0.5, 0.5);
  $("#tl-out").onclick = () => zoomBy(2, 0.5);
  // the ruler's canvas is as wide as every track's: it narrows when a scrollbar comes, and the tracks are drawn again
  new ResizeObserver(() => { if (currentTab === "timeline") drawTimeline(); }).observe(TL.ruler);
}

function zoomTo(t0, t1) {
  const minSpan = 0.001, full = TL.end - TL.start;
  if (t1 - t0 < minSpan) { const c = (t0 + t1) / 2; t0 = c - minSpan / 2; t1 = c + minSpan / 2; }
  if (t1 - t0 > full * 1.5) { t0 = TL.start - full * 0.25; t1 = TL.end + full * 0.25; }
  TL.t0 = t0; TL.t1 = t1;
  drawTimeline();
}
function zoomBy(f, at) { const span = TL.t1 - TL.t0, c = TL.t0 + span * at; zoomTo(c - (c - TL.t0) * f, c + (TL.t1 - c) * f); }

function sizeCanvas(cv, hgt) {
  const dpr = window.devicePixelRatio || 1, w = cv.getBoundingClientRect().width || 600;
  cv.style.height = hgt + "px";
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(hgt * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(hgt * dpr); }
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  return [ctx, w];
}

function drawTimeline() {
  if (!TL.tracks) return;
  const {t0, t1} = TL, span = t1 - t0;
  $("#tl-range").textContent = `${fmtTime(t0 - TL.start)} – ${fmtTime(t1 - TL.start)} (${fmtTime(span)} shown)`;
  $("#tracks").dataset.t0 = t0; $("#tracks").dataset.t1 = t1;
  // the ruler: about one tick per 100 px, at 1, 2 or 5 times a power of ten
  const [rc, rw] = sizeCanvas(TL.ruler, 20);
  const raw = span / Math.max(1, rw / 100), p10 = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * p10).find(s => s >= raw);
  rc.fillStyle = "#52606d"; rc.font = "10px system-ui"; rc.strokeStyle = "#cbd2d9";
  for (let t = Math.ceil((t0 - TL.start) / step) * step; t <= t1 - TL.start; t += step) {
    const x = (t + TL.start - t0) / span * rw;
    rc.beginPath(); rc.moveTo(x, 12); rc.lineTo(x, 20); rc.stroke();
    rc.fillText(fmtTime(t).replace(/\.(\d*?)0+ /, (m, d) => (d ? "." + d : "") + " "), x + 2, 10);
  }
  for (const t of TL.tracks) {
    const [ctx, w] = sizeCanvas(t.canvas, t.height);
    t.width = w;
    const X = ts => (ts - t0) / span * w;
    if (t.kind === "slices") {
      const drawn = {};
      let n = 0;
      t.rects = [];
      for (const s of t.slices) {
        if (s.ts + s.dur < t0 || s.ts > t1) continue;
        const x0 = Math.max(X(s.ts), -1), x1 = Math.min(X(s.ts + s.dur), w + 1), y = s.depth * ROW + 2;
        const ww = Math.max(x1 - x0, 1);
        ctx.fillStyle = colorOf(s.cat);
        ctx.fillRect(x0, y, ww, ROW - 2);
        if (s === TL.selected) { ctx.strokeStyle = "#111"; ctx.lineWidth = 2; ctx.strokeRect(x0 + 1, y + 1, ww - 2, ROW - 4); }
        if (ww > 28) {
          ctx.save(); ctx.beginPath(); ctx.rect(x0, y, ww, ROW - 2); ctx.clip();
          ctx.fillStyle = "#fff"; ctx.font = "11px system-ui";
          ctx.fillText(s.name, Math.max(x0, 0) + 3, y + 12);
          ctx.restore();
        }
        drawn[s.cat] = (drawn[s.cat] || 0) + 1; n++;
      }
      for (const e of t.instants) {
        if (e.ts < t0 || e.ts > t1) continue;
        const x = X(e.ts);
        ctx.fillStyle = "#334155"; ctx.beginPath(); ctx.moveTo(x, 2); ctx.lineTo(x + 4, 10); ctx.lineTo(x - 4, 10); ctx.fill();
      }
      t.el.dataset.drawn = n;
      t.el.dataset.drawnCats = JSON.stringify(drawn);
    } else {
      const pts = t.points, H = t.height - 6, maxv = t.max || 1;
      ctx.fillStyle = "rgba(16,185,129,.35)"; ctx.strokeStyle = "#059669"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(0, t.height);
      let drawnPts = 0, last = null;
      for (const [ts, v] of pts) {
        if (ts > t1) break;
        const y = t.height - v / maxv * H;
        if (ts < t0) { last = y; continue; }
        if (last === null) last = t.height;
        ctx.lineTo(X(ts), last); ctx.lineTo(X(ts), y);
        last = y; drawnPts++;
      }
      if (last !== null) ctx.lineTo(w, last);
      ctx.lineTo(w, t.height); ctx.closePath(); ctx.fill(); ctx.stroke();
      ctx.fillStyle = "#334155"; ctx.font = "10px system-ui";
      ctx.fillText(`max ${t.bytes ? fmtBytes(t.max) : t.max.toLocaleString("en-US")}`, 4, 10);
      if (TL.selectedCounter && TL.selectedCounter.track === t) { const x = X(TL.selectedCounter.ts); ctx.strokeStyle = "#111"; ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, t.height); ctx.stroke(); }
      t.el.dataset.drawn = drawnPts;
    }
  }
}

// where a track's slice `i` is drawn now, in page coordinates (for the tests, which click it)
function sliceBox(trackIndex, i) {
  const t = TL.tracks[trackIndex], s = t.slices[i], r = t.canvas.getBoundingClientRect(), span = TL.t1 - TL.t0;
  const x0 = Math.max((s.ts - TL.t0) / span * r.width, 0), x1 = Math.min((s.ts + s.dur - TL.t0) / span * r.width, r.width);
  return {x: r.left + (x0 + Math.max(x1 - x0, 1) / 2), y: r.top + s.depth * ROW + 2 + ROW / 2, w: x1 - x0};
}

function attachTrackMouse(t) {
  const cv = t.canvas;
  let drag = null, moved = false;
  cv.addEventListener("wheel", ev => {
    ev.preventDefault();
    const r = cv.getBoundingClientRect();
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY) || ev.shiftKey) { const d = (ev.deltaX || ev.deltaY) / r.width * (TL.t1 - TL.t0); zoomTo(TL.t0 + d, TL.t1 + d); }
    else zoomBy(Math.exp(ev.deltaY * 0.002), (ev.clientX - r.left) / r.width);
  }, {passive: false});
  cv.addEventListener("mousedown", ev => { drag = {x: ev.clientX, t0: TL.t0, t1: TL.t1}; moved = false; });
  window.addEventListener("mousemove", ev => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    if (Math.abs(dx) > 3) moved = true;
    if (moved) { const d = -dx / cv.getBoundingClientRect().width * (drag.t1 - drag.t0); zoomTo(drag.t0 + d, drag.t1 + d); }
  });
  window.addEventListener("mouseup", () => { drag = null; });
  cv.addEventListener("dblclick", () => zoomTo(TL.start, TL.end));
  cv.addEventListener("click", ev => {
    if (moved) return;
    const r = cv.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    const span = TL.t1 - TL.t0, ts = TL.t0 + x / r.width * span, slack = 3 / r.width * span;
    if (t.kind === "counter") {
      const before = t.points.filter(p => p[0] <= ts);
      const v = before.length ? before[before.length - 1][1] : 0;
      TL.selectedCounter = {track: t, ts}; TL.selected = null;
      showInfo({kind: "counter", name: t.name, track: `${t.proc} › ${t.name}`, at: ts - TL.start, value: v, bytes: t.bytes});
    } else {
      const depth = Math.floor((y - 2) / ROW);
      // the slice under the pointer; else (a slice thinner than a pixel) the nearest within 3 px
      const row = t.slices.filter(s => s.depth === depth);
      const best = row.find(s => s.ts <= ts && ts <= s.ts + s.dur) ||
        row.filter(s => s.ts - slack <= ts && ts <= s.ts + s.dur + slack).sort((a, b) => Math.abs(a.ts + a.dur / 2 - ts) - Math.abs(b.ts + b.dur / 2 - ts))[0];
      TL.selected = best || null; TL.selectedCounter = null;
      if (best) showInfo({kind: "slice", slice: best, track: `${t.proc} › ${t.name}`});
    }
    drawTimeline();
  });
}

function showInfo(what) {
  const box = $("#slice-info");
  if (what.kind === "counter") {
    box.dataset.kind = "counter"; box.dataset.name = what.name; box.dataset.value = what.value;
    fill(box, h("dl", {class: "kv"}, h("dt", {}, "counter"), h("dd", {}, what.track), h("dt", {}, "at"), h("dd", {}, fmtTime(what.at)),
      h("dt", {}, "value"), h("dd", {dataset: {field: "value"}}, what.bytes ? `${what.value.toLocaleString("en-US")} bytes (${fmtBytes(what.value)})` : what.value.toLocaleString("en-US"))));
    return;
  }
  const s = what.slice;
  Object.assign(box.dataset, {kind: "slice", name: s.name, cat: s.cat, dur: s.dur});
  fill(box, h("dl", {class: "kv"},
    h("dt", {}, "slice"), h("dd", {dataset: {field: "name"}}, s.name),
    h("dt", {}, "category"), h("dd", {dataset: {field: "cat"}}, h("span", {class: "swatch", style: `background:${colorOf(s.cat)}`}), s.cat),
    h("dt", {}, "track"), h("dd", {}, what.track),
    h("dt", {}, "start"), h("dd", {}, fmtTime(s.ts - TL.start)),
    h("dt", {}, "duration"), h("dd", {dataset: {field: "duration"}}, fmtTime(s.dur)),
    Object.entries(s.args || {}).map(([k, v]) => [h("dt", {}, k), h("dd", {dataset: {field: "arg-" + k}}, typeof v === "object" ? JSON.stringify(v) : String(v))])));
}

function timelineKey(ev) {
  const k = ev.key.toLowerCase(), span = TL.t1 - TL.t0;
  if (k === "w") zoomBy(0.7, 0.5); else if (k === "s") zoomBy(1 / 0.7, 0.5);
  else if (k === "a") zoomTo(TL.t0 - span * 0.2, TL.t1 - span * 0.2); else if (k === "d") zoomTo(TL.t0 + span * 0.2, TL.t1 + span * 0.2);
  else return;
  ev.preventDefault();
}

// ---------------------------------------------------------------- the memory view
// per device: each buffer's lifetimes from the alloc/free instants; drawn stacked over time, largest at the bottom (the
// largest MAX_BANDS each in a colour, the rest as one grey band), and a table of the buffers alive at a chosen time,
// largest first (the peak to begin with)
const MAX_BANDS = 40;
function buildMemory() {
  const box = $("#memory");
  fill(box);
  const P = TL.P;
  if (!P.buffers.size) {
    box.append(h("p", {class: "hint"}, "This trace has no per-buffer alloc/free events (traces from before they were recorded): the timeline's memory counter shows the total."));
    return;
  }
  for (const [pid, evs] of P.buffers) {
    evs.sort((a, b) => a.ts - b.ts);
    const lives = [], open = new Map();
    for (const e of evs) {
      const id = e.args.buffer;
      if (e.name === "alloc") { const l = {buffer: id, bytes: e.args.bytes, start: e.ts, end: null}; open.set(id, l); lives.push(l); }
      else if (open.has(id)) { open.get(id).end = e.ts; open.delete(id); }
    }
    // the total over time, to find the peak: counted after all the events of one time, as the counter shows it
    let cur = 0, peak = 0, peakT = P.start;
    const live = new Set();
    evs.forEach((e, i) => {
      const id = e.args.buffer;
      if (e.name === "alloc" && !live.has(id)) { live.add(id); cur += e.args.bytes; }
      else if (e.name === "free" && live.has(id)) { live.delete(id); cur -= e.args.bytes; }
      if ((i + 1 === evs.length || evs[i + 1].ts !== e.ts) && cur > peak) { peak = cur; peakT = e.ts; }
    });
    const name = P.procName.get(pid) || `process ${pid}`;
    const cv = h("canvas", {});
    const table = h("div", {class: "alive"});
    const sec = h("div", {class: "memdev", dataset: {pid, buffers: new Set(lives.map(l => l.buffer)).size, peak, peakTs: peakT}},
      h("h3", {}, `${name}: peak ${fmtBytes(peak)} at ${fmtTime(peakT - P.start)}, ${lives.length} allocations of ${new Set(lives.map(l => l.buffer)).size} buffers`),
      h("div", {class: "hint"}, "Buffers alive over time, stacked largest first (each of the largest in its own colour). Click to list the buffers alive then."),
      cv, table);
    box.append(sec);
    const M = {pid, lives, evs, cv, table, sec, peak, at: peakT};
    cv.addEventListener("click", ev => { const r = cv.getBoundingClientRect(); M.at = P.start + (ev.clientX - r.left) / r.width * (P.end - P.start); drawMemory(M); });
    MEM.push(M);
  }
}
const MEM = [];

const aliveAt = (lives, ts) => lives.filter(l => l.start <= ts && (l.end === null || l.end > ts)).sort((a, b) => b.bytes - a.bytes || a.buffer - b.buffer);
const bufColor = id => `hsl(${(id * 137.508) % 360},60%,62%)`;

function drawMemory(M) {
  const P = TL.P, H = 260;
  const [ctx, w] = sizeCanvas(M.cv, H);
  const span = P.end - P.start, X = ts => (ts - P.start) / span * w, Y = b => H - 4 - b / (M.peak || 1) * (H - 16);
  const top = new Set(Array.from(new Map(M.lives.map(l => [l.buffer, l.bytes]))).sort((a, b) => b[1] - a[1]).slice(0, MAX_BANDS).map(x => x[0]));
  // the times where what is alive changes; with very many, one per pixel column (short lives between two may not show)
  let times = Array.from(new Set([P.start, ...M.evs.map(e => e.ts)])).sort((a, b) => a - b);
  if (times.length > 4 * w) times = Array.from({length: w}, (_, i) => P.start + i / w * span);
  const ends = M.lives.map(l => [l.start, l.end === null ? Infinity : l.end]);
  const idx = M.lives.map((l, i) => i).sort((a, b) => M.lives[b].bytes - M.lives[a].bytes);
  for (let k = 0; k < times.length; k++) {
    const ta = times[k], tb = k + 1 < times.length ? times[k + 1] : P.end;
    const x0 = X(ta), x1 = Math.max(X(tb), x0 + 0.5);
    let base = 0, other = 0;
    for (const i of idx) {
      if (!(ends[i][0] <= ta && ends[i][1] > ta)) continue;
      const l = M.lives[i];
      if (!top.has(l.buffer)) { other += l.bytes; continue; }
      ctx.fillStyle = bufColor(l.buffer);
      ctx.fillRect(x0, Y(base + l.bytes), x1 - x0, Y(base) - Y(base + l.bytes));
      base += l.bytes;
    }
    if (other) { ctx.fillStyle = "#cbd2d9"; ctx.fillRect(x0, Y(base + other), x1 - x0, Y(base) - Y(base + other)); }
  }
  const xa = X(M.at);
  ctx.strokeStyle = "#111"; ctx.beginPath(); ctx.moveTo(xa, 0); ctx.lineTo(xa, H); ctx.stroke();
  ctx.fillStyle = "#334155"; ctx.font = "10px system-ui"; ctx.fillText(`peak ${fmtBytes(M.peak)}`, 4, 10);
  const alive = aliveAt(M.lives, M.at);
  const total = alive.reduce((a, l) => a + l.bytes, 0);
  M.sec.dataset.at = M.at; M.sec.dataset.aliveBytes = total; M.sec.dataset.alive = alive.length;
  const when = ts => (ts === null ? "still alive" : fmtTime(ts - P.start));
  fill(M.table,
    h("p", {}, `At ${fmtTime(M.at - P.start)}: ${alive.length} buffers alive, ${total.toLocaleString("en-US")} bytes (${fmtBytes(total)}), largest first:`),
    h("table", {class: "bufs"}, h("tr", {}, h("th", {}, "buffer"), h("th", {}, "bytes"), h("th", {}, ""), h("th", {}, "allocated"), h("th", {}, "freed"), h("th", {}, "lived")),
      alive.slice(0, 200).map(l => h("tr", {dataset: {buffer: l.buffer, bytes: l.bytes}},
        h("td", {}, h("span", {class: "swatch", style: `background:${top.has(l.buffer) ? bufColor(l.buffer) : "#cbd2d9"}`}), `#${l.buffer}`),
        h("td", {}, l.bytes.toLocaleString("en-US")), h("td", {}, fmtBytes(l.bytes)), h("td", {}, when(l.start)), h("td", {}, when(l.end)),
        h("td", {}, fmtTime((l.end === null ? P.end : l.end) - l.start))))),
    alive.length > 200 ? h("p", {class: "hint"}, `and ${alive.length - 200} smaller ones`) : null);
}

// ---------------------------------------------------------------- tabs and start
let currentTab = null;
function showTab(name) {
  const btn = $(`#tabs button[data-tab="${name}"]`);
  if (!btn || btn.hidden) return;
  currentTab = name;
  $$("#tabs button").forEach(b => b.classList.toggle("active", b.dataset.tab === name));
  $$(".tab").forEach(s => { s.hidden = s.id !== `tab-${name}`; });
  document.body.dataset.tab = name;
  if (name === "timeline") drawTimeline();
  if (name === "memory") MEM.forEach(drawMemory);
  if (name === "rewrites" && PASS.has(sel.gid)) showPass();   // the graph fits the pane it is drawn in
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
}

function init(data) {
  D = data;
  for (const g of D.groups) { G.set(g.id, g); const k = G.has(g.parent) ? g.parent : "root"; (KIDS.get(k) || KIDS.set(k, []).get(k)).push(g); }
  for (const p of D.passes) PASS.set(p.group, p);
  const notes = [];
  if (D.truncated) notes.push(`The recording was cut short: ${D.truncated}`);
  const dropped = D.profile && D.profile.otherData && D.profile.otherData.dropped_events;
  if (dropped) notes.push(`The profile dropped ${dropped} events: ${D.profile.otherData.note || ""}`);
  if (notes.length) { const b = $("#banner"); b.textContent = notes.join(" — "); b.hidden = false; b.dataset.truncated = D.truncated ? "1" : ""; }
  const hasGraphs = D.groups.length > 0, hasProfile = !!(D.profile && D.profile.traceEvents);
  $(`#tabs button[data-tab="rewrites"]`).hidden = !hasGraphs;
  $(`#tabs button[data-tab="timeline"]`).hidden = $(`#tabs button[data-tab="memory"]`).hidden = !hasProfile;
  $$("#tabs button").forEach(b => b.addEventListener("click", () => showTab(b.dataset.tab)));
  if (hasGraphs) buildTree();
  if (hasProfile) { buildTimeline(); buildMemory(); }
  $("#search").addEventListener("input", ev => filterTree(ev.target.value));
  document.addEventListener("keydown", onKey);
  const kernels = D.groups.filter(g => g.kind === "kernel").length;
  $("#status").textContent = [hasGraphs && `${kernels} kernels, ${D.passes.length} passes, ${Object.keys(D.nodes).length} nodes`,
                              hasProfile && `${D.profile.traceEvents.length} trace events`].filter(Boolean).join(" · ") || "an empty recording";
  const want = location.hash.slice(1);
  showTab([want, hasGraphs ? "rewrites" : "timeline"].find(t => t && $(`#tabs button[data-tab="${t}"]`) && !$(`#tabs button[data-tab="${t}"]`).hidden) || "rewrites");
  document.body.dataset.ready = "1";
}

window.viz = {sliceBox, select, showTab, TL, zoomTo, reach, passPositions, changedNodes, ruleBox, PASS};   // for the tests
fetch("data.json").then(r => { if (!r.ok) throw new Error(`data.json: HTTP ${r.status}`); return r.json(); }).then(init)
  .catch(err => { $("#status").textContent = "failed to load"; const b = $("#banner"); b.hidden = false; b.textContent = `Could not load the recording: ${err.message}`; document.body.dataset.ready = "error"; });
