// The operator's page: the server API, called with the key this tab was
// given, every 1.5 s. Nothing leaves this origin; the key lives in session
// storage (this tab only) and goes in a header, never in a URL.
'use strict';
(() => {
  const KEY = 'rtchat-admin-key';
  const EVERY_MS = 1500;
  const WINDOW_MS = 15 * 60 * 1000;
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let previous = null; // {t, in, out}: counters of the last poll
  const samples = []; // {t, in, out, sockets, rtt}

  const key = () => sessionStorage.getItem(KEY);

  async function call(op, body) {
    const response = await fetch('api/' + op, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key() || '' },
      body: JSON.stringify(body || {}),
      cache: 'no-store',
    });
    let answer = null;
    try { answer = await response.json(); } catch (_) { answer = null; }
    return { ok: response.ok, status: response.status, answer };
  }

  function element(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function showLogin(why) {
    stop();
    $('dash').hidden = true;
    $('forget').hidden = true;
    $('login').hidden = false;
    $('refusal').hidden = !why;
    $('refusal').textContent = why || '';
  }

  function showDash() {
    $('login').hidden = true;
    $('dash').hidden = false;
    $('forget').hidden = false;
  }

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  function uptime(seconds) {
    if (seconds === undefined) return '';
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
  }

  function confirmThen(text, action) {
    $('confirm-text').textContent = text;
    $('confirm').hidden = false;
    $('confirm-yes').onclick = async () => { $('confirm').hidden = true; await action(); };
    $('confirm-no').onclick = () => { $('confirm').hidden = true; show('cancelled', null); };
  }

  function show(what, result) {
    const out = $('answer');
    if (!result) { out.textContent = what; out.className = ''; return; }
    out.textContent = `${what}: HTTP ${result.status}\n` + JSON.stringify(result.answer, null, 2);
    out.className = result.ok ? '' : 'refused';
  }

  function renderReplicas(replicas) {
    const body = $('replicas').tBodies[0];
    body.replaceChildren(...replicas.map((r) => {
      const tr = element('tr');
      tr.dataset.server = r.server;
      const state = r.draining ? 'draining' : r.ready === false ? 'not ready' : 'ready';
      const cls = r.draining ? 'state-draining' : r.ready === false ? 'state-down' : 'state-ready';
      tr.append(element('td', r.server), element('td', state, cls), element('td', r.sockets),
        element('td', r.native ?? ''), element('td', r.socketio ?? ''), element('td', r.rooms ?? ''),
        element('td', uptime(r.uptime_seconds)), element('td', r.version ?? ''),
        element('td', r.redis_rtt_ms == null ? '–' : r.redis_rtt_ms.toFixed(2)));
      const cell = element('td');
      if (!r.draining) {
        const button = element('button', 'Drain', 'drain');
        button.type = 'button';
        button.onclick = () => confirmThen(`Drain ${r.server}? Its sockets move to the other replicas and it exits.`,
          async () => show(`drain ${r.server}`, await call('drain', { server: r.server })));
        cell.append(button);
      }
      tr.append(cell);
      return tr;
    }));
  }

  function renderRooms(rooms) {
    const body = $('rooms').tBodies[0];
    body.replaceChildren(...rooms.map((r) => {
      const tr = element('tr');
      const button = element('button', 'Show');
      button.type = 'button';
      button.onclick = () => { $('room-name').value = r.room; showRoom(r.room); };
      const cell = element('td');
      cell.append(button);
      tr.append(element('td', r.room), element('td', r.members ?? '?'), element('td', r.sessions), cell);
      return tr;
    }));
  }

  // The x axis spans what the page has seen, from 30 s up to 15 minutes.
  function plot(id, values, digits) {
    const svg = $(id);
    const now = Date.now();
    const span = Math.min(WINDOW_MS, Math.max(30000, samples.length ? now - samples[0].t : 0));
    const max = Math.max(1e-9, ...values.map((v) => v.y));
    const points = values.map((v) => `${(300 * (1 - (now - v.t) / span)).toFixed(1)},${(98 - 96 * v.y / max).toFixed(1)}`);
    const ns = 'http://www.w3.org/2000/svg';
    const base = document.createElementNS(ns, 'line');
    for (const [k, v] of Object.entries({ x1: 0, y1: 98, x2: 300, y2: 98 })) base.setAttribute(k, v);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.replaceChildren(base, line);
    const last = span >= 60000 ? `${Math.round(span / 60000)} min` : `${Math.round(span / 1000)} s`;
    $('m-' + id.slice(2)).textContent = values.length ? `max ${max.toFixed(digits)} · last ${last}` : '';
  }

  function record(replicas) {
    const now = Date.now();
    const sum = (f) => replicas.reduce((n, r) => n + (r[f] || 0), 0);
    const counters = { t: now, in: sum('messages_in'), out: sum('messages_out') };
    const rtts = replicas.map((r) => r.redis_rtt_ms).filter((v) => v != null);
    const sample = { t: now, sockets: sum('sockets'), rtt: rtts.length ? Math.max(...rtts) : null, in: 0, out: 0 };
    if (previous) {
      const seconds = Math.max(0.001, (now - previous.t) / 1000);
      // A replica that restarted counts from 0 again: never a negative rate.
      sample.in = Math.max(0, counters.in - previous.in) / seconds;
      sample.out = Math.max(0, counters.out - previous.out) / seconds;
    }
    previous = counters;
    samples.push(sample);
    while (samples.length && now - samples[0].t > WINDOW_MS) samples.shift();
    $('t-replicas').textContent = replicas.length;
    $('t-sockets').textContent = sample.sockets;
    $('t-in').textContent = sample.in.toFixed(1);
    $('t-out').textContent = sample.out.toFixed(1);
    $('t-rtt').textContent = sample.rtt == null ? '–' : sample.rtt.toFixed(2);
    plot('p-in', samples.map((s) => ({ t: s.t, y: s.in })), 1);
    plot('p-out', samples.map((s) => ({ t: s.t, y: s.out })), 1);
    plot('p-sockets', samples.map((s) => ({ t: s.t, y: s.sockets })), 0);
    plot('p-rtt', samples.filter((s) => s.rtt != null).map((s) => ({ t: s.t, y: s.rtt })), 2);
  }

  async function poll() {
    let result;
    try {
      result = await call('cluster');
    } catch (err) {
      $('served-by').textContent = 'unreachable: ' + err.message;
      return;
    }
    if (result.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin('Refused: ' + (result.answer && result.answer.message || 'wrong API key'));
      return;
    }
    if (!result.ok) {
      $('served-by').textContent = 'the cluster view failed: HTTP ' + result.status;
      return;
    }
    showDash();
    $('served-by').textContent = 'served by ' + result.answer.server;
    renderReplicas(result.answer.replicas);
    renderRooms(result.answer.rooms);
    record(result.answer.replicas);
  }

  async function showRoom(room) {
    const [presence, history] = await Promise.all([
      call('presence', { room }), call('history', { room, limit: 20 }),
    ]);
    if (!presence.ok) { show(`room ${room}`, presence); return; }
    $('members').replaceChildren(...presence.answer.members.map((m) => element('li', `${m.name || m.user} (${m.user}, ${m.server})`)));
    const messages = history.ok ? history.answer.messages : [];
    $('history').replaceChildren(...messages.map((m) => element('li', `${m.name || m.user}: ${m.message}`)));
  }

  function start() {
    stop();
    poll();
    timer = setInterval(poll, EVERY_MS);
  }

  $('key-form').onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('key').value);
    $('key').value = '';
    start();
  };
  $('forget').onclick = () => { sessionStorage.removeItem(KEY); showLogin(''); };
  $('room-form').onsubmit = (e) => { e.preventDefault(); showRoom($('room-name').value.trim()); };
  $('publish-form').onsubmit = (e) => {
    e.preventDefault();
    const room = $('pub-room').value.trim(), message = $('pub-text').value;
    confirmThen(`Post to ${room}: "${message}"?`, async () => show(`post to ${room}`, await call('publish', { room, message })));
  };
  $('disconnect-form').onsubmit = (e) => {
    e.preventDefault();
    const user = $('dc-user').value.trim();
    confirmThen(`Disconnect every connection of ${user}, on every replica?`, async () => show(`disconnect ${user}`, await call('disconnect', { user })));
  };

  if (key()) start(); else showLogin('');
})();
