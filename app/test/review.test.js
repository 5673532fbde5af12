// The workbench's keys and its queue: prefetch, answer, undo, against a fake of the review API that keeps the
// server's rules (an item labelled is not handed out again; undo reopens it).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { actionFor, keyFor, KEYS } from '../src/review/keys.js';
import { Queue } from '../src/review/queue.js';
import { ReviewApi } from '../src/review/api.js';
import { REASONS, reasonText } from '../src/review/strings.js';

class FakeServer {
  constructor(n) {
    this.items = Array.from({ length: n }, (_, i) => ({ item_id: i + 1, photo_url: `/v1/review/${i + 1}/photo`, reasons: [] }));
    this.labels = []; // { item_id, label }
    this.calls = [];
    this.refuse = new Map(); // item id -> HTTP status the server answers on it
  }
  open() { return this.items.filter((item) => !this.labels.some((l) => l.item_id === item.item_id)); }
  async next(exclude) { this.calls.push(['next', exclude]); return this.open().find((i) => i.item_id !== exclude) || null; }
  async item(id) { return this.items.find((i) => i.item_id === id); }
  async answer(id, body) {
    this.calls.push(['answer', id, body]);
    if (this.refuse.has(id)) throw Object.assign(new Error('This photo is decided already.'), { status: this.refuse.get(id) });
    if (body.label) this.labels.push({ item_id: id, label: body.label });
    return { item_id: id, model: { label: 'cmd', probabilities: { cmd: 0.9 } }, counts: { left_for_you: this.open().length } };
  }
  async undo() {
    const last = this.labels.pop();
    if (!last) throw Object.assign(new Error('nothing'), { status: 404 });
    return { item_id: last.item_id };
  }
}

test('every answer has one key, and keys are ignored while typing or with a modifier', () => {
  assert.deepEqual(actionFor({ key: '4', target: { tagName: 'BODY' } }), { label: 'cmd' });
  assert.deepEqual(actionFor({ key: 'N', target: { tagName: 'BODY' } }), { label: 'not_cassava' });
  assert.deepEqual(actionFor({ key: 'z', target: {} }), { undo: true });
  assert.equal(actionFor({ key: '4', target: { tagName: 'INPUT' } }), null);
  assert.equal(actionFor({ key: '4', ctrlKey: true, target: {} }), null);
  assert.equal(actionFor({ key: '4', repeat: true, target: {} }), null); // held down: only the first press counts
  assert.equal(actionFor({ key: 'x', target: {} }), null);
  assert.equal(new Set(Object.values(KEYS).map((a) => JSON.stringify(a))).size, Object.keys(KEYS).length);
  assert.equal(keyFor({ skip: true }), 's');
});

test('the next item is fetched (and its photo loaded) while the current one is shown', async () => {
  const server = new FakeServer(3);
  const loaded = [];
  const queue = new Queue(server, (url) => loaded.push(url));
  await queue.start();
  assert.equal(queue.current.item_id, 1);
  assert.equal(queue.upcoming.item_id, 2);
  assert.deepEqual(loaded, ['/v1/review/2/photo']);
  assert.deepEqual(server.calls.at(-1), ['next', 1]); // asked with the current one excluded
  const last = await queue.answer({ label: 'cbb' });
  assert.equal(last.result.model.label, 'cmd'); // the model's answer arrives with the agronomist's own
  assert.equal(queue.current.item_id, 2);
  assert.equal(queue.upcoming.item_id, 3);
  await queue.answer({ label: 'cbb' });
  await queue.answer({ label: 'cbb' });
  assert.equal(queue.current, null);
});

test('undo shows the item again, and the one that was showing comes next', async () => {
  const server = new FakeServer(3);
  const queue = new Queue(server);
  await queue.start();
  await queue.answer({ label: 'cgm' });
  assert.equal(queue.current.item_id, 2);
  await queue.undo();
  assert.equal(queue.current.item_id, 1);
  assert.equal(queue.upcoming.item_id, 2);
  assert.equal(queue.last, null);
  await queue.answer({ label: 'cmd' });
  assert.deepEqual(server.labels, [{ item_id: 1, label: 'cmd' }]);
  const again = await queue.undo();
  assert.equal(again.item_id, 1); // undone again: item 1 back
  server.labels.length = 0;
  assert.equal(await queue.undo(), null); // nothing left to undo
});

test('the API client sends the CSRF token on changes only', async () => {
  const seen = [];
  const fetchImpl = async (path, init) => {
    seen.push([init.method, path, init.headers['X-CSRF-Token']]);
    if (path === '/v1/me') return new Response(JSON.stringify({ csrf_token: 'tok' }), { status: 200 });
    if (path.startsWith('/v1/review/next')) return new Response(null, { status: 204 });
    return new Response(JSON.stringify({ detail: 'You labelled this photo already' }), { status: 409 });
  };
  const api = new ReviewApi(fetchImpl);
  await api.me();
  assert.equal(await api.next(7), null);
  await assert.rejects(api.answer(7, { label: 'cmd' }), /labelled this photo already/);
  assert.deepEqual(seen, [['GET', '/v1/me', undefined], ['GET', '/v1/review/next?exclude=7', undefined],
    ['POST', '/v1/review/7', 'tok']]);
});

test('why a photo is in the queue is said without anybody\'s answer, whatever the server\'s sentence names', () => {
  // core/review.py WEIGHTS: every reason code the server gives.
  const codes = ['farmer_disagreed', 'probably_mislabelled', 'unsure', 'gate_borderline', 'drift', 'audit'];
  const labels = /\b(cbb|cbsd|cgm|cmd|healthy|mosaic|blight|streak|mottle)\b|\d\.\d/i;
  for (const code of codes) {
    const text = reasonText({ code, detail: 'A farmer said CGM; the model said CMD (0.91).' });
    assert.ok(REASONS[code], code);
    assert.doesNotMatch(text, labels);
  }
  assert.equal(reasonText({ code: 'photo_deleted', detail: 'The model said CMD.' }), 'photo deleted');
});

test('an item others decided meanwhile is passed over (and said so); any other failure keeps it on screen', async () => {
  const server = new FakeServer(3);
  const queue = new Queue(server);
  await queue.start();
  server.refuse.set(1, 409);
  assert.equal(await queue.answer({ label: 'cmd' }), null);
  assert.equal(queue.current.item_id, 2);
  assert.deepEqual(queue.passed, { item: server.items[0], reason: 'This photo is decided already.' });
  assert.equal(queue.last, null); // no model answer to show for an answer not taken
  server.refuse.set(2, 500);
  await assert.rejects(queue.answer({ label: 'cmd' }), /decided already/);
  assert.equal(queue.current.item_id, 2);
  assert.equal(queue.busy, false);
  server.refuse.delete(2);
  await queue.answer({ label: 'cbb' });
  assert.equal(queue.passed, null);
  assert.equal(queue.last.item.item_id, 2);
});
