// A stand-in for mhogo's API, to work on the app without the stack: serves dist/ at /app/ with the API's headers
// (CSP, no-cache shell, immutable assets) and answers the routes the app uses, in memory. Not a test of the server:
// the browser tests run against the real one.
//
//   node tools/mock-api.mjs [--port 8024] [--model ../ml/weights/baseline.int8.onnx]
//   pairing link: http://127.0.0.1:8024/app/#pair=good   (once; any other code is 410)
//   POST /__mock/answer {"status": "rejected", "reason": "too_dark"}   what the next photos get
import http from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('..', import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).join(' ').split('--').filter(Boolean).map((a) => a.trim().split(/\s+/)));
const PORT = Number(args.port ?? 8024);
const MODEL = args.model ?? join(HERE, '..', 'ml', 'weights', 'baseline.int8.onnx');
const DIST = join(HERE, 'dist');
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; "
  + "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'self'; object-src 'none'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg', '.wasm': 'application/wasm',
  '.webmanifest': 'application/manifest+json', '.txt': 'text/plain' };

const state = { codes: new Set(['good']), tokens: new Set(), jobs: new Map(), uploads: new Map(), keys: new Map(), answer: { status: 'classified', label: 'cmd' }, events: [] };
const model = existsSync(MODEL) ? readFileSync(MODEL) : null;
const modelSpec = model ? { ...JSON.parse(readFileSync(MODEL.replace(/\.onnx$/, '.json'))), size_bytes: model.length } : null;
if (modelSpec) modelSpec.url = `/v1/model/${modelSpec.sha256}.onnx`;
if (model && createHash('sha256').update(model).digest('hex') !== modelSpec.sha256) throw new Error('model and its JSON differ');

function problem(res, status, detail, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/problem+json', ...headers });
  res.end(JSON.stringify({ type: 'about:blank', title: http.STATUS_CODES[status], status, detail }));
}
const json = (res, status, body, headers = {}) => { res.writeHead(status, { 'Content-Type': 'application/json', ...headers }); res.end(JSON.stringify(body)); };
const body = (req) => new Promise((resolve) => { const chunks = []; req.on('data', (c) => chunks.push(c)); req.on('end', () => resolve(Buffer.concat(chunks))); });

function makeJob(key) {
  const id = randomUUID().replaceAll('-', '');
  const answer = state.answer;
  const job = { job_id: id, status: 'queued', idempotency_key: key, created_at: new Date().toISOString(), updated_at: new Date().toISOString() };
  state.jobs.set(id, job);
  setTimeout(() => { // the worker's answer, a moment later
    job.status = answer.status;
    if (answer.status === 'classified') job.result = { label_id: 3, label: answer.label, name: answer.label, confidence: 0.91, probabilities: {}, model_version: modelSpec?.model_version ?? 'mock', advice: '' };
    if (answer.status === 'rejected') job.rejection = { reason: answer.reason, message: answer.reason };
  }, 1500);
  return job;
}

function serveStatic(req, res) {
  let path = decodeURIComponent(new URL(req.url, 'http://x').pathname).slice('/app/'.length) || 'index.html';
  path = normalize(path).replace(/^(\.\.[/\\])+/, '');
  let file = join(DIST, path);
  if (!existsSync(file) || !extname(file)) file = join(DIST, 'index.html');
  const name = file.slice(DIST.length + 1);
  const cache = name === 'index.html' || name === 'sw.js' ? 'no-cache' : name.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
  res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': cache, 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' });
  res.end(readFileSync(file));
}

async function api(req, res, url) {
  const { pathname } = url;
  if (req.method === 'POST' && pathname === '/v1/pairings') {
    const { code } = JSON.parse((await body(req)).toString() || '{}');
    if (!state.codes.delete(code)) return problem(res, 410, 'This pairing link was used already or has expired.');
    const token = randomUUID();
    state.tokens.add(token);
    return json(res, 201, { token, device_id: 1, device_name: 'mock phone' });
  }
  if (pathname === '/__mock/answer') { state.answer = JSON.parse((await body(req)).toString()); return json(res, 200, state.answer); }
  if (pathname === '/__mock/revoke') { state.tokens.clear(); return json(res, 200, {}); }
  if (pathname === '/__mock/state') return json(res, 200, { jobs: [...state.jobs.values()], events: state.events, uploads: state.uploads.size });
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  if (!state.tokens.has(token)) return json(res, 401, { type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'This device was revoked.', reason: 'revoked' }, { 'Content-Type': 'application/problem+json' });
  const key = req.headers['idempotency-key'];

  if (req.method === 'POST' && pathname === '/v1/uploads') {
    let upload = state.keys.get(key);
    if (!upload) {
      upload = { id: randomUUID(), key, length: Number(req.headers['upload-length']), data: [], received: 0, jobId: null };
      state.uploads.set(upload.id, upload);
      state.keys.set(key, upload);
    }
    res.writeHead(201, { Location: `/v1/uploads/${upload.id}`, 'Tus-Resumable': '1.0.0' });
    return res.end();
  }
  const uploadMatch = pathname.match(/^\/v1\/uploads\/([\w-]+)$/);
  if (uploadMatch) {
    const upload = state.uploads.get(uploadMatch[1]);
    if (!upload) return problem(res, 404, 'No such upload for this device. Start a new one.');
    const headers = () => ({ 'Upload-Offset': String(upload.received), 'Upload-Length': String(upload.length), 'Tus-Resumable': '1.0.0', 'Cache-Control': 'no-store', ...(upload.jobId ? { 'Mhogo-Job-Id': upload.jobId } : {}) });
    if (req.method === 'HEAD') { res.writeHead(200, headers()); return res.end(); }
    if (req.method === 'PATCH') {
      if (Number(req.headers['upload-offset']) !== upload.received) return problem(res, 409, 'Upload-Offset is not where the upload stands.', { 'Upload-Offset': String(upload.received) });
      req.on('data', (chunk) => { upload.data.push(chunk); upload.received += chunk.length; });
      req.on('end', () => {
        if (upload.received === upload.length && !upload.jobId) upload.jobId = makeJob(upload.key).job_id;
        res.writeHead(204, headers());
        res.end();
      });
      return undefined;
    }
  }
  if (req.method === 'GET' && pathname === '/v1/jobs') return json(res, 200, { jobs: [...state.jobs.values()].reverse(), next: null });
  const jobMatch = pathname.match(/^\/v1\/jobs\/(\w+)(\/feedback)?$/);
  if (jobMatch) {
    const job = state.jobs.get(jobMatch[1]);
    if (!job) return problem(res, 404, 'No such job for this device.');
    if (jobMatch[2]) { state.events.push({ feedback: JSON.parse((await body(req)).toString()), key }); return json(res, 202, { event_id: randomUUID() }); }
    return json(res, 200, job);
  }
  if (req.method === 'POST' && pathname === '/v1/events') {
    state.events.push(...JSON.parse((await body(req)).toString()));
    return json(res, 202, { accepted: 1 });
  }
  if (pathname === '/v1/model') return modelSpec ? json(res, 200, modelSpec) : problem(res, 404, 'No phone build yet.');
  if (modelSpec && pathname === modelSpec.url) {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': model.length });
    return res.end(model);
  }
  return problem(res, 404, 'Not here.');
}

http.createServer((req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname === '/app') { res.writeHead(308, { Location: '/app/' }); return res.end(); }
  if (url.pathname.startsWith('/app/')) return serveStatic(req, res);
  return api(req, res, url).catch((error) => problem(res, 500, String(error)));
}).listen(PORT, '127.0.0.1', () => console.log(`mock mhogo on http://127.0.0.1:${PORT}/app/#pair=good`));
