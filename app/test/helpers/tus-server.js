// A small tus 1.0 server for the tests, with mhogo's ways: the Idempotency-Key finds its upload again, a PATCH cut
// off keeps what arrived, the finished upload's answers (and later HEADs) carry Mhogo-Job-Id; and knobs to cut every
// PATCH after some bytes, refuse with a status, or lose the last answer.
import http from 'node:http';

export function startTusServer({ cutAfter = null, refuse = null, loseLastAnswer = false } = {}) {
  const uploads = new Map();
  const byKey = new Map();
  const jobs = new Map(); // key -> job id
  const log = [];
  let nextId = 1;
  const state = { cutAfter, refuse, loseLastAnswer };

  const server = http.createServer((req, res) => {
    const key = req.headers['idempotency-key'];
    log.push({ method: req.method, url: req.url, key, offset: req.headers['upload-offset'] });
    if (state.refuse) {
      const { status, retryAfter, body } = state.refuse;
      res.writeHead(status, { 'Content-Type': 'application/problem+json', ...(retryAfter ? { 'Retry-After': retryAfter } : {}) });
      res.end(JSON.stringify(body ?? { status, title: 'refused', detail: 'refused' }));
      return;
    }
    const jobHeaders = (u) => (u.jobId ? { 'Mhogo-Job-Id': u.jobId } : {});
    if (req.method === 'POST') {
      let upload = byKey.get(key);
      if (!upload) {
        upload = { id: String(nextId++), key, length: Number(req.headers['upload-length']), chunks: [], received: 0, jobId: null };
        uploads.set(upload.id, upload);
        byKey.set(key, upload);
      }
      res.writeHead(201, { Location: `/v1/uploads/${upload.id}`, 'Tus-Resumable': '1.0.0' });
      res.end();
      return;
    }
    const upload = uploads.get(req.url.split('/').pop());
    if (!upload) {
      res.writeHead(404);
      res.end();
      return;
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Upload-Offset': String(upload.received), 'Upload-Length': String(upload.length), 'Tus-Resumable': '1.0.0', ...jobHeaders(upload) });
      res.end();
      return;
    }
    if (req.method === 'PATCH') {
      if (Number(req.headers['upload-offset']) !== upload.received) {
        res.writeHead(409, { 'Upload-Offset': String(upload.received) });
        res.end();
        return;
      }
      let taken = 0;
      req.on('data', (chunk) => {
        const room = state.cutAfter == null ? chunk.length : Math.max(0, state.cutAfter - taken);
        const kept = chunk.subarray(0, room);
        upload.chunks.push(kept);
        upload.received += kept.length;
        taken += kept.length;
        if (kept.length < chunk.length) req.socket.destroy(); // the link drops: what arrived is kept
      });
      req.on('end', () => {
        if (upload.received === upload.length && !upload.jobId) {
          upload.jobId = jobs.get(upload.key) ?? `job-${jobs.size + 1}`;
          jobs.set(upload.key, upload.jobId);
          if (state.loseLastAnswer) {
            state.loseLastAnswer = false;
            req.socket.destroy();
            return;
          }
        }
        res.writeHead(204, { 'Upload-Offset': String(upload.received), 'Tus-Resumable': '1.0.0', ...jobHeaders(upload) });
        res.end();
      });
      return;
    }
    res.writeHead(405);
    res.end();
  });

  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const endpoint = `http://127.0.0.1:${server.address().port}/v1/uploads`;
      resolve({
        endpoint, uploads, jobs, log, state,
        bytesOf: (key) => Buffer.concat(byKey.get(key)?.chunks ?? []),
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
      });
    });
  });
}
