// The agronomist's queue on the page: the item shown, the next one already fetched (and its photo loaded), and the
// answer just given with the model's own answer, which only then is shown.
const STALE = new Set([404, 409, 410]); // an item that is not this agronomist's to answer any more

export class Queue {
  constructor(api, preload = () => {}) {
    this.api = api;
    this.preload = preload; // starts loading a photo's URL
    this.current = null;
    this.upcoming = null;
    this.last = null; // { item, answer, result } of the answer just given
    this.passed = null; // { item, reason } of an item the server would not take an answer on
    this.busy = false;
  }

  async start() {
    this.current = await this.api.next();
    await this.prefetch();
    return this.current;
  }

  async prefetch() {
    this.upcoming = this.current ? await this.api.next(this.current.item_id) : null;
    if (this.upcoming) this.preload(this.upcoming.photo_url);
  }

  // Answer the item shown ({label} or {skip: true}); the next one is shown at once, and the one after fetched. An item
  // the server no longer takes (decided by others meanwhile: 409; gone: 404, 410) is passed over, and `passed` says so.
  async answer(body) {
    if (!this.current || this.busy) return null;
    this.busy = true;
    try {
      const item = this.current;
      this.passed = null;
      let result;
      try {
        result = await this.api.answer(item.item_id, body);
      } catch (error) {
        if (!STALE.has(error.status)) throw error;
        this.passed = { item, reason: error.message };
      }
      if (result) this.last = { item, answer: body, result };
      const upcoming = this.upcoming && this.upcoming.item_id !== item.item_id ? this.upcoming : null;
      this.current = upcoming || (await this.api.next());
      if (this.current && result && result.counts) this.current = { ...this.current, counts: result.counts };
      await this.prefetch();
      return result ? this.last : null;
    } finally {
      this.busy = false;
    }
  }

  // Take back the latest label: its item is shown again; the one that was showing comes after it.
  async undo() {
    if (this.busy) return null;
    this.busy = true;
    try {
      const undone = await this.api.undo();
      if (!undone) return null;
      const again = await this.api.item(undone.item_id);
      if (this.current && this.current.item_id !== again.item_id) this.upcoming = this.current;
      this.current = again;
      this.last = null;
      this.passed = null;
      return again;
    } catch (error) {
      if (error.status === 404) return null; // nothing to undo
      throw error;
    } finally {
      this.busy = false;
    }
  }
}
