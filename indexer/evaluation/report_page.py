"""The report's one HTML page: inline CSS and JavaScript, the data as one embedded JSON block.

The page never builds a DOM row per answer: the script parses the JSON once, filters and sorts an
array of indices, and renders one page of results (50 cards, 50 table rows) at a time, so 100,000
answers open as fast as 100. Views (all in the URL's #hash, so a view can be bookmarked):

  #view=all|wrong|distractors|right|none|failed   which answers (distractors: non-landmark
                                                   queries that got an answer, most confident first)
  &lm=ID                                           answers or truths of one landmark
  &sort=conf|-conf|id|gap                          order
  &page=N                                          page of the results
  #q=ID                                            one query: bigger pictures, the matches

The JSON layout (`data` in indexer/report.py) is read back by the tests.
"""

from __future__ import annotations

import html
import json

DATA_ID = "report-data"

CSS = """
[hidden]{display:none!important}
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f6f6}
header{background:#263238;color:#fff;padding:10px 16px}
header h1{font-size:18px;margin:0 0 6px}
.stats span{display:inline-block;margin-right:16px}
.stats b{font-size:16px}
nav{padding:8px 16px;background:#fff;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
nav label{margin-right:12px}
nav button{margin:0 2px}
main{display:flex;gap:16px;padding:12px 16px;align-items:flex-start}
#queries{flex:1 1 56%;min-width:0}
#landmarks{flex:1 1 44%;min-width:0;overflow-x:auto;background:#fff;padding:8px;border:1px solid #ddd}
.card{display:flex;gap:10px;background:#fff;border:1px solid #ddd;border-left:6px solid #999;margin-bottom:8px;padding:6px}
.card.right,.card.rejected{border-left-color:#2e7d32}.card.wrong,.card.missed{border-left-color:#c62828}
.card.distractor{border-left-color:#ef6c00}.card.failed{border-left-color:#555}
.q{width:170px;flex:none}.q img,.n img{display:block;background:#ccc;object-fit:contain}
.q img{width:160px;height:160px}.n img{width:96px;height:96px}
.blank{display:flex;align-items:center;justify-content:center;color:#777;background:#ddd}
.q .blank{width:160px;height:160px}.n .blank{width:96px;height:96px}
.ns{display:flex;gap:6px;flex-wrap:wrap}.n{width:100px;font-size:12px;overflow-wrap:anywhere}
.n.hit{outline:3px solid #2e7d32}.n.miss{outline:3px solid #c62828}
.tag{font-size:12px;padding:1px 5px;border-radius:3px;color:#fff;background:#777}
.tag.right,.tag.rejected{background:#2e7d32}.tag.wrong,.tag.missed{background:#c62828}.tag.distractor{background:#ef6c00}
table{border-collapse:collapse;width:100%;font-size:12px}th,td{padding:2px 4px;border-bottom:1px solid #eee;text-align:right}
th{cursor:pointer;background:#eceff1}td:nth-child(2),th:nth-child(2){text-align:left}
a{color:#1565c0;cursor:pointer}
.pager{margin:6px 0}
#detail{background:#fff;border:1px solid #ddd;padding:10px;margin:12px 16px}
#detail svg{max-width:100%;height:auto;background:#eee}
.muted{color:#777}
"""

SCRIPT = r"""
const D = JSON.parse(document.getElementById('report-data').textContent);
const S = D.summary, Q = D.queries, R = D.refs, NAMES = D.names, PAGE = 50;
// query row: [id, answer, confidence, truth, status, thumb, neighbours, match, error, gap_term]
const ID=0, ANS=1, CONF=2, TRUTH=3, STATUS=4, THUMB=5, NB=6, MATCH=7, ERR=8, GAPT=9;
const byId = new Map(Q.map((q, i) => [q[ID], i]));
const $ = s => document.querySelector(s);
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const lmName = l => l === null ? 'no landmark' : (NAMES[l] ? l + ' ' + NAMES[l] : String(l));
const img = (t, cls) => t ? `<img loading="lazy" src="${esc(D.thumb_dir + '/' + t[0])}" width="${t[1]}" height="${t[2]}">`
                          : `<div class="blank">no image</div>`;
const VIEWS = {all: q => true, wrong: q => ['wrong','missed','distractor'].includes(q[STATUS]),
  distractors: q => q[STATUS] === 'distractor', right: q => q[STATUS] === 'right' || q[STATUS] === 'rejected',
  none: q => q[ANS] === null, failed: q => q[STATUS] === 'failed'};
function state() {
  const p = new URLSearchParams(location.hash.slice(1));
  return {view: p.get('view') || 'all', lm: p.get('lm') || '', sort: p.get('sort') || '', page: +(p.get('page') || 1),
          q: p.get('q'), lmsort: p.get('lmsort') || '-queries', lmpage: +(p.get('lmpage') || 1)};
}
function go(change) {
  const s = Object.assign(state(), {q: null}, change), p = new URLSearchParams();
  for (const k of ['view','lm','sort','page','q','lmsort','lmpage']) if (s[k] !== null && s[k] !== '' && s[k] !== undefined) p.set(k, s[k]);
  location.hash = p.toString();
}
function landmarksOf(text) {  // an id, or the landmarks whose name contains the text; null: any
  if (text === '') return null;
  if (/^-?\d+$/.test(text)) return new Set([+text]);
  const t = text.toLowerCase();
  return new Set(Object.keys(NAMES).filter(l => NAMES[l].toLowerCase().includes(t)).map(Number));
}
function selected(s) {
  const keep = VIEWS[s.view] || VIEWS.all, lms = landmarksOf(s.lm);
  let idx = [];
  for (let i = 0; i < Q.length; i++) {
    const q = Q[i];
    if (!keep(q)) continue;
    if (lms !== null && !lms.has(q[ANS]) && !(q[TRUTH] || []).some(l => lms.has(l))) continue;
    idx.push(i);
  }
  const sort = s.sort || (s.view === 'distractors' ? '-conf' : 'id');
  const conf = i => Q[i][CONF] === null ? -Infinity : Q[i][CONF];
  if (sort === '-conf') idx.sort((a, b) => conf(b) - conf(a) || (Q[a][ID] < Q[b][ID] ? -1 : 1));
  else if (sort === 'conf') idx.sort((a, b) => conf(a) - conf(b) || (Q[a][ID] < Q[b][ID] ? -1 : 1));
  else if (sort === 'gap') idx.sort((a, b) => (Q[b][GAPT] || 0) - (Q[a][GAPT] || 0));
  return idx;
}
function pager(n, page, key) {
  const pages = Math.max(1, Math.ceil(n / PAGE));
  return `<div class="pager">${n} result(s), page ${page} of ${pages}
    <button ${page <= 1 ? 'disabled' : ''} onclick="go({${key}: ${page - 1}})">&lt; prev</button>
    <button ${page >= pages ? 'disabled' : ''} onclick="go({${key}: ${page + 1}})">next &gt;</button></div>`;
}
function neighbours(q) {
  return q[NB].map(([r, sim, inl]) => {
    const ref = R[r], truth = q[TRUTH];
    const cls = truth === null ? '' : (truth.includes(ref[1]) ? 'hit' : 'miss');
    return `<div class="n ${cls}">${img(ref[2])}${esc(lmName(ref[1]))}<br>sim ${sim.toFixed(3)}` +
           (inl >= 0 ? `<br>${inl} inliers` : '') + `</div>`;
  }).join('');
}
function answerText(q) {
  return q[ANS] === null ? (q[ERR] ? `no answer (${esc(q[ERR])})` : 'no landmark')
                         : `${esc(lmName(q[ANS]))} <b>${q[CONF].toFixed(3)}</b>`;
}
function card(i) {
  const q = Q[i];
  const truth = q[TRUTH] === null ? '' : `<br>truth: ${q[TRUTH].length ? q[TRUTH].map(l => esc(lmName(l))).join(', ') : 'not a landmark'}`;
  return `<div class="card ${q[STATUS]}"><div class="q">${img(q[THUMB])}<a data-q="${esc(q[ID])}">${esc(q[ID])}</a></div>
    <div><span class="tag ${q[STATUS]}">${q[STATUS]}</span> ${answerText(q)}${truth}
    ${q[MATCH] ? ` &middot; <a data-q="${esc(q[ID])}">matches (${q[MATCH][1]} inliers)</a>` : ''}
    <div class="ns">${neighbours(q)}</div></div></div>`;
}
function matchSvg(q) {
  const [r, inl, lines] = q[MATCH], qt = q[THUMB], rt = R[r][2];
  if (!qt || !rt) return '';
  const w = qt[1] + 10 + rt[1], h = Math.max(qt[2], rt[2]);
  let s = `<svg class="matches" viewBox="0 0 ${w} ${h}" width="${w * 2}" height="${h * 2}">` +
    `<image href="${esc(D.thumb_dir + '/' + qt[0])}" x="0" y="0" width="${qt[1]}" height="${qt[2]}"/>` +
    `<image href="${esc(D.thumb_dir + '/' + rt[0])}" x="${qt[1] + 10}" y="0" width="${rt[1]}" height="${rt[2]}"/>`;
  for (let k = 0; k + 3 < lines.length; k += 4)
    s += `<line x1="${lines[k]}" y1="${lines[k+1]}" x2="${lines[k+2] + qt[1] + 10}" y2="${lines[k+3]}" stroke="hsl(${(k * 37) % 360},90%,50%)" stroke-width="0.6"/>`;
  return s + `</svg><p>${lines.length / 4} inlier matches drawn between the query and reference ${esc(R[r][0])} (${esc(lmName(R[r][1]))}); verification counted ${inl}.</p>`;
}
function detail(id) {
  const i = byId.get(id);
  if (i === undefined) return `<p>No query ${esc(id)}.</p>`;
  const q = Q[i];
  return `<p><a onclick="history.back()">&larr; back</a></p>${card(i)}` +
    (q[MATCH] ? matchSvg(q) : '<p class="muted">No verified match to draw for this query.</p>') +
    (q[GAPT] ? `<p>GAP contribution ${q[GAPT].toFixed(5)}</p>` : '');
}
function landmarkTable(s) {
  const cols = [['id','landmark'],['name','name'],['queries','queries'],['right','right'],['top1','top-1'],
                ['answered','answered as'],['wrong_as','wrong as'],['gap','GAP share']];
  const L = D.landmarks.slice(), key = s.lmsort.replace('-', ''), dir = s.lmsort.startsWith('-') ? -1 : 1;
  const col = cols.findIndex(c => c[0] === key);
  const val = r => col === 1 ? (NAMES[r[0]] || '') : (col === 4 ? (r[2] ? r[3] / r[2] : -1) : r[[0,0,2,3,0,4,5,6][col]]);
  if (col >= 0) L.sort((a, b) => { const x = val(a), y = val(b); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
  const page = Math.min(s.lmpage, Math.max(1, Math.ceil(L.length / PAGE)));
  const rows = L.slice((page - 1) * PAGE, page * PAGE).map(r =>
    `<tr><td><a onclick="go({lm: '${r[0]}', page: 1, q: null})">${r[0]}</a></td><td>${esc(NAMES[r[0]] || '')}</td><td>${r[2]}</td><td>${r[3]}</td>` +
    `<td>${r[2] ? (r[3] / r[2]).toFixed(3) : ''}</td><td>${r[4]}</td><td>${r[5]}</td><td>${r[6] ? r[6].toPrecision(3) : 0}</td></tr>`).join('');
  const head = cols.map(([k, t]) => `<th onclick="go({lmsort: '${s.lmsort === '-' + k ? k : '-' + k}', lmpage: 1})">${t}</th>`).join('');
  return `<h2>Per landmark</h2><p class="muted">queries: in the solution; top-1: right / queries; answered as: answers naming it;
    wrong as: those that were wrong; GAP share: its right answers' part of GAP (the column sums to GAP)</p>${pager(L.length, page, 'lmpage')}
    <table id="landmark-table"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}
function render() {
  const s = state();
  if (s.q) { $('#detail').innerHTML = detail(s.q); $('#detail').hidden = false; $('main').hidden = true; return; }
  $('#detail').hidden = true; $('main').hidden = false;
  $('#view').value = s.view; $('#lm').value = s.lm; $('#sort').value = s.sort;
  const idx = selected(s), pages = Math.max(1, Math.ceil(idx.length / PAGE)), page = Math.min(Math.max(1, s.page), pages);
  $('#queries').innerHTML = pager(idx.length, page, 'page') +
    idx.slice((page - 1) * PAGE, page * PAGE).map(card).join('') + pager(idx.length, page, 'page');
  $('#landmarks').innerHTML = D.landmarks.length ? landmarkTable(s) : '<p class="muted">No solution: no per-landmark table.</p>';
}
function header() {
  const f = v => typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v;
  $('#stats').innerHTML = D.summary_order.filter(k => S[k] !== undefined && S[k] !== null)
    .map(k => `<span>${esc(k)}: <b>${esc(f(S[k]))}</b></span>`).join('');
}
header();
$('#view').onchange = e => go({view: e.target.value, page: 1});
$('#lm').onchange = e => go({lm: e.target.value.trim(), page: 1});
$('#sort').onchange = e => go({sort: e.target.value, page: 1});
document.addEventListener('click', e => { const q = e.target.dataset && e.target.dataset.q; if (q !== undefined) go({q}); });
window.onhashchange = render;
render();
document.body.dataset.rendered = Q.length;  // for tools: answers loaded, and ms from navigation to the first view
document.body.dataset.renderMs = Math.round(performance.now());
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style></head>
<body>
<header><h1>{title}</h1><div class="stats" id="stats"></div></header>
<nav>
<label>show <select id="view">
<option value="all">all answers</option><option value="wrong">wrong answers</option>
<option value="distractors">confident distractors (non-landmark queries answered)</option>
<option value="right">right answers</option><option value="none">no answer</option>
<option value="failed">failed images</option></select></label>
<label>landmark <input id="lm" size="12" placeholder="id or name"></label>
<label>sort <select id="sort"><option value="">default (id; distractors: confidence)</option>
<option value="-conf">confidence, highest first</option><option value="conf">confidence, lowest first</option>
<option value="id">id</option><option value="gap">GAP contribution</option></select></label>
<a onclick="go({{view: 'all', lm: '', sort: '', page: 1, lmpage: 1}})">reset</a>
</nav>
<div id="detail" hidden></div>
<main><section id="queries"></section><section id="landmarks"></section></main>
<script type="application/json" id="{data_id}">{data}</script>
<script>{script}</script>
</body></html>
"""


def embed_json(data) -> str:
    """`data` as JSON safe inside a <script> element (no `</`, no `<!--`)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def render(data, title: str) -> str:
    """The whole page for `data` (indexer/report.py builds it)."""
    return TEMPLATE.format(title=html.escape(title), css=CSS, data_id=DATA_ID, data=embed_json(data), script=SCRIPT)


def read_data(page: str):
    """The JSON embedded in a page written by `render` (for tests and tools)."""
    start_tag = f'<script type="application/json" id="{DATA_ID}">'
    start = page.index(start_tag) + len(start_tag)
    return json.loads(page[start:page.index("</script>", start)])
