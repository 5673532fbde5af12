// The review API (producers/api/review.py), with the session's CSRF token on every change.
export class ReviewApi {
  constructor(fetchImpl = globalThis.fetch.bind(globalThis)) {
    this.fetch = fetchImpl;
    this.csrf = null;
  }

  async request(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    const response = await this.fetch(path, {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) throw Object.assign(new Error('logged out'), { status: 401 });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(data.detail || `HTTP ${response.status}`), { status: response.status });
    return data;
  }

  async me() {
    const me = await this.request('GET', '/v1/me');
    this.csrf = me.csrf_token;
    return me;
  }

  next(exclude) { return this.request('GET', `/v1/review/next${exclude ? `?exclude=${exclude}` : ''}`); }
  item(id) { return this.request('GET', `/v1/review/${id}`); }
  answer(id, body) { return this.request('POST', `/v1/review/${id}`, body); }
  undo() { return this.request('POST', '/v1/review/undo'); }
  logOut() {
    return this.fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': this.csrf || '' }, credentials: 'same-origin' });
  }
}
